import type { Socket } from "node:net";

/**
 * undici 7's HTTP/1 parser, as far as this file needs it. These are internals: undici is
 * pinned to an exact 7.x version in package.json, and the unit test for this file fails
 * if they change.
 */
interface H1Parser {
  paused: boolean;
  ptr: number | null;
  statusCode: number | null;
  shouldKeepAlive: boolean;
  llhttp: { llhttp_resume(ptr: number): void };
  execute(data: Buffer): void;
}

const EMPTY = Buffer.alloc(0);

/**
 * Works around nodejs/undici#5360, an uncatchable `assert(!this.paused)` that ends the
 * process when an upstream closes a `Connection: close` response while its body is paused
 * by backpressure (a complete 20 MiB blob on a cold cache did it 5 times in 15). The fix
 * (nodejs/undici#5474) is released in undici 8 only, which needs Node 22; regcache runs on
 * Node 20. This listener, placed before undici's own "end" handler, does what the fix does
 * in Parser.finish(): resume the parser and drain what the socket still holds, so the
 * response completes (or fails as truncated) instead of crashing. Remove it with undici 8.
 */
export function finishPausedParserOnEnd(socket: Socket): void {
  socket.prependListener("end", () => {
    const symbol = Object.getOwnPropertySymbols(socket).find((s) => s.description === "parser");
    const parser = symbol ? ((socket as unknown as Record<symbol, H1Parser | null>)[symbol] ?? undefined) : undefined;
    if (!parser?.paused || parser.ptr === null || !parser.statusCode || parser.shouldKeepAlive) return;
    let data: Buffer;
    do {
      parser.llhttp.llhttp_resume(parser.ptr);
      parser.paused = false;
      data = (socket.read() as Buffer | null) ?? EMPTY;
      parser.execute(data);
    } while (parser.paused && data.length > 0 && parser.ptr !== null);
    if (parser.paused && parser.ptr !== null) {
      parser.llhttp.llhttp_resume(parser.ptr);
      parser.paused = false;
    }
  });
}
