import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type SecureContext, type TLSSocket } from "node:tls";

/** One HTTP/1.1 response as the client saw it, body de-chunked. */
export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  /** Interim (1xx) statuses that came before it. */
  interim: number[];
}

/** A request written byte by byte; `body` follows the head, after a 100 when `awaitContinue`. */
export interface RawRequest {
  method: string;
  path: string;
  host: string;
  headers?: [string, string][];
  body?: Buffer;
  chunked?: boolean;
  awaitContinue?: boolean;
}

export function serializeHead(r: RawRequest): string {
  const lines = [`${r.method} ${r.path} HTTP/1.1`, `Host: ${r.host}`, ...(r.headers ?? []).map(([k, v]) => `${k}: ${v}`)];
  if (r.body && r.chunked) lines.push("Transfer-Encoding: chunked");
  else if (r.body) lines.push(`Content-Length: ${r.body.length}`);
  if (r.awaitContinue) lines.push("Expect: 100-continue");
  return `${lines.join("\r\n")}\r\n\r\n`;
}

export function serializeBody(r: RawRequest): Buffer {
  if (!r.body) return Buffer.alloc(0);
  if (!r.chunked) return r.body;
  // Several chunks of uneven size, as a streaming client sends them.
  const parts: Buffer[] = [];
  for (let at = 0; at < r.body.length; ) {
    const size = Math.min(r.body.length - at, 70_000 + (at % 9_973));
    parts.push(Buffer.from(`${size.toString(16)}\r\n`), r.body.subarray(at, at + size), Buffer.from("\r\n"));
    at += size;
  }
  parts.push(Buffer.from("0\r\n\r\n"));
  return Buffer.concat(parts);
}

/**
 * What a TLS client trusts: a CA's PEM, or a context built once from it and reused, as a real
 * client reuses its TLS configuration (building one costs ~1 ms, which a handshake timing
 * must not include).
 */
export type Trust = string | SecureContext;

/** Opens a TLS connection to `servername` through a CONNECT to `proxyPort`, trusting `ca`. */
export async function tlsThroughProxy(proxyPort: number, target: string, servername: string | undefined, ca: Trust): Promise<TLSSocket> {
  const raw = netConnect(proxyPort, "127.0.0.1");
  await new Promise<void>((resolve, reject) => {
    raw.once("error", reject);
    raw.once("connect", () => {
      raw.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
      let head = "";
      const onData = (d: Buffer): void => {
        head += d.toString("latin1");
        if (!head.includes("\r\n\r\n")) return;
        raw.off("data", onData);
        if (!/^HTTP\/1\.1 200/.test(head)) reject(new Error(`CONNECT answered: ${head.split("\r\n")[0]}`));
        else resolve();
      };
      raw.on("data", onData);
    });
  });
  return openTls(raw, servername, ca);
}

/** A TLS connection straight to the upstream (the "direct" side of a comparison). */
export async function tlsDirect(port: number, host: string, servername: string | undefined, ca: Trust): Promise<TLSSocket> {
  const raw = netConnect(port, host);
  await new Promise<void>((resolve, reject) => raw.once("connect", resolve).once("error", reject));
  return openTls(raw, servername, ca);
}

function openTls(raw: Socket, servername: string | undefined, ca: Trust): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const trust = typeof ca === "string" ? { ca } : { secureContext: ca };
    const socket = tlsConnect({ socket: raw, servername, ...trust, ALPNProtocols: ["http/1.1"] }, () => resolve(socket));
    socket.once("error", reject);
  });
}

/**
 * Sends `requests` on one connection, all at once (pipelined) unless one awaits a 100,
 * and reads as many responses; HEAD responses have no body whatever their headers say.
 */
export async function exchange(socket: TLSSocket, requests: RawRequest[], timeoutMs = 30_000): Promise<RawResponse[]> {
  const reader = new ResponseReader(socket);
  const responses: RawResponse[] = [];
  const pipelined = !requests.some((r) => r.awaitContinue);
  if (pipelined) socket.write(Buffer.concat(requests.flatMap((r) => [Buffer.from(serializeHead(r), "latin1"), serializeBody(r)])));
  const deadline = setTimeout(() => socket.destroy(new Error("timed out waiting for responses")), timeoutMs);
  try {
    for (const request of requests) {
      const interim: number[] = [];
      if (!pipelined) {
        socket.write(serializeHead(request), "latin1");
        if (request.awaitContinue) {
          const first = await reader.next(false);
          interim.push(first.status);
          if (first.status !== 100) {
            responses.push({ ...first, interim: [] });
            continue;
          }
        }
        socket.write(serializeBody(request));
      }
      let response = await reader.next(request.method === "HEAD");
      while (response.status >= 100 && response.status < 200) {
        interim.push(response.status);
        response = await reader.next(request.method === "HEAD");
      }
      responses.push({ ...response, interim });
    }
  } finally {
    clearTimeout(deadline);
    socket.destroy();
  }
  return responses;
}

/** A reused connection closed before any byte of the answer: as HTTP clients do (Go's transport), the request may go again on a new one. */
export class ConnectionLost extends Error {
  constructor(readonly cause: Error) {
    super(`kept-alive connection lost before the answer: ${cause.message}`);
  }
}

/**
 * A kept-alive connection, one request at a time, as registry clients use theirs. Unusable once
 * the server closed it, said `Connection: close`, or cut an answer short; and once idle for
 * `maxIdleMs`, well below the servers' keep-alive timeouts (Node's 5 s), so that no request
 * is ever written to a connection the server is closing.
 */
export class KeptConnection {
  private readonly reader: ResponseReader;
  private closing = false;
  private lastUsed = Date.now();
  /** Requests answered on it: a failure on a reused connection before any byte of its answer is the connection's, not the server's answer. */
  answered = 0;

  constructor(
    private readonly socket: TLSSocket,
    private readonly maxIdleMs = 2_000,
  ) {
    this.reader = new ResponseReader(socket);
  }

  get usable(): boolean {
    return !this.closing && !this.socket.destroyed && !this.reader.ended && Date.now() - this.lastUsed < this.maxIdleMs;
  }

  async send(request: RawRequest, timeoutMs = 30_000): Promise<RawResponse> {
    const receivedBefore = this.reader.received;
    this.socket.write(Buffer.concat([Buffer.from(serializeHead(request), "latin1"), serializeBody(request)]));
    const deadline = setTimeout(() => this.socket.destroy(new Error("timed out waiting for the response")), timeoutMs);
    try {
      const interim: number[] = [];
      let response = await this.reader.next(request.method === "HEAD");
      while (response.status >= 100 && response.status < 200) {
        interim.push(response.status);
        response = await this.reader.next(request.method === "HEAD");
      }
      if (/\bclose\b/i.test(response.headers.connection ?? "")) this.close();
      this.answered += 1;
      return { ...response, interim };
    } catch (err) {
      this.close();
      if (this.answered > 0 && this.reader.received === receivedBefore) throw new ConnectionLost(err as Error);
      throw err;
    } finally {
      clearTimeout(deadline);
      this.lastUsed = Date.now();
    }
  }

  close(): void {
    this.closing = true;
    this.socket.destroy();
  }
}

/** Parses responses from a socket's bytes: Content-Length, chunked, or until close. */
class ResponseReader {
  private buffer = Buffer.alloc(0);
  ended = false;
  /** Bytes received on the connection so far. */
  received = 0;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;

  constructor(socket: TLSSocket) {
    socket.on("data", (d: Buffer) => {
      this.received += d.length;
      this.buffer = Buffer.concat([this.buffer, d]);
      this.wake?.();
    });
    socket.on("end", () => this.finish());
    socket.on("close", () => this.finish());
    socket.on("error", (err) => this.finish(err));
  }

  private finish(err?: Error): void {
    this.ended = true;
    this.failure ??= err;
    this.wake?.();
  }

  private async until(check: () => boolean): Promise<void> {
    while (!check()) {
      if (this.ended) throw this.failure ?? new Error("connection closed before the response was complete");
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  async next(isHead: boolean): Promise<RawResponse> {
    await this.until(() => this.buffer.includes("\r\n\r\n"));
    const headEnd = this.buffer.indexOf("\r\n\r\n");
    const lines = this.buffer.subarray(0, headEnd).toString("latin1").split("\r\n");
    this.buffer = this.buffer.subarray(headEnd + 4);
    const status = Number(lines[0]!.split(" ")[1]);
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
    }
    if (isHead || (status >= 100 && status < 200) || status === 204 || status === 304) return { status, headers, body: Buffer.alloc(0), interim: [] };
    if (headers["transfer-encoding"]?.includes("chunked")) return { status, headers, body: await this.chunked(), interim: [] };
    if (headers["content-length"] !== undefined) {
      const length = Number(headers["content-length"]);
      await this.until(() => this.buffer.length >= length);
      const body = this.buffer.subarray(0, length);
      this.buffer = this.buffer.subarray(length);
      return { status, headers, body, interim: [] };
    }
    await this.until(() => this.ended).catch(() => undefined);
    return { status, headers, body: this.buffer, interim: [] };
  }

  private async chunked(): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (;;) {
      await this.until(() => this.buffer.includes("\r\n"));
      const lineEnd = this.buffer.indexOf("\r\n");
      const size = parseInt(this.buffer.subarray(0, lineEnd).toString("latin1"), 16);
      this.buffer = this.buffer.subarray(lineEnd + 2);
      if (size === 0) {
        await this.until(() => this.buffer.includes("\r\n"));
        this.buffer = this.buffer.subarray(this.buffer.indexOf("\r\n") + 2);
        return Buffer.concat(parts);
      }
      await this.until(() => this.buffer.length >= size + 2);
      parts.push(this.buffer.subarray(0, size));
      this.buffer = this.buffer.subarray(size + 2);
    }
  }
}
