import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { TestPki } from "./test-ca.js";

export type FakeHandler = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * A small HTTPS upstream for behaviours a well-behaved registry never shows:
 * wrong bytes for a digest, slow drips, 503s, 429s. Uses the test PKI, so regcache
 * verifies it like any upstream. Every request is recorded.
 */
export class FakeUpstream {
  readonly requests: { method: string; url: string; headers: IncomingMessage["headers"] }[] = [];
  private server: Server | undefined;
  port = 0;

  constructor(
    private readonly pki: TestPki,
    public handler: FakeHandler,
  ) {}

  /** Listens on `host` (127.0.0.1, or ::1 for IPv6 tests), on any free port. */
  async start(host = "127.0.0.1"): Promise<void> {
    this.server = createServer({ key: readFileSync(this.pki.serverKey), cert: readFileSync(this.pki.serverCert) }, (req, res) => {
      this.requests.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers });
      this.handler(req, res);
    });
    await new Promise<void>((resolve) => this.server!.listen(0, host, resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  resolveArg(host: string): string[] {
    return ["--resolve", `${host}:443=127.0.0.1:${this.port}`];
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve) ?? resolve(undefined));
  }
}

/** Writes `body` in `chunks` pieces, `delayMs` apart; stops if the client goes away. */
export function drip(res: ServerResponse, body: Buffer, chunks: number, delayMs: number): void {
  const size = Math.ceil(body.length / chunks);
  let offset = 0;
  const next = (): void => {
    if (res.destroyed) return;
    if (offset >= body.length) {
      res.end();
      return;
    }
    res.write(body.subarray(offset, offset + size));
    offset += size;
    setTimeout(next, delayMs);
  };
  next();
}
