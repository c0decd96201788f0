import { readFileSync } from "node:fs";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { TLSSocket } from "node:tls";
import type { TestPki } from "./test-ca.js";

export interface RawUpstreamRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
}

/** Gets each request head, the TLS socket to answer on, and the TCP socket under it. */
export type RawHandler = (req: RawUpstreamRequest, tls: TLSSocket, tcp: Socket) => void;

/**
 * An HTTPS upstream written at the byte level, for what an HTTP server library will not do:
 * close TCP without a TLS close_notify, send fewer bytes than announced, never finish a
 * handshake. One request per connection; every request is recorded.
 */
export class RawTlsUpstream {
  readonly requests: RawUpstreamRequest[] = [];
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(
    private readonly pki: TestPki,
    public handler: RawHandler,
  ) {}

  async start(): Promise<void> {
    const key = readFileSync(this.pki.serverKey);
    const cert = readFileSync(this.pki.serverCert);
    this.server = createServer((tcp) => {
      this.sockets.add(tcp);
      tcp.on("close", () => this.sockets.delete(tcp));
      tcp.on("error", () => undefined);
      const tls = new TLSSocket(tcp, { isServer: true, key, cert });
      tls.on("error", () => undefined);
      let head = "";
      const onData = (d: Buffer): void => {
        head += d.toString("latin1");
        const end = head.indexOf("\r\n\r\n");
        if (end < 0) return;
        tls.off("data", onData);
        const [requestLine, ...lines] = head.slice(0, end).split("\r\n");
        const [method, path] = requestLine!.split(" ");
        const headers: Record<string, string> = {};
        for (const line of lines) headers[line.slice(0, line.indexOf(":")).toLowerCase()] = line.slice(line.indexOf(":") + 1).trim();
        const req = { method: method!, path: path!, headers };
        this.requests.push(req);
        this.handler(req, tls, tcp);
      };
      tls.on("data", onData);
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  resolveArg(host: string): string[] {
    return ["--resolve", `${host}:443=127.0.0.1:${this.port}`];
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server?.close(resolve) ?? resolve(undefined));
  }
}

/**
 * Writes a response head and `body` on `tls`, then ends the TCP connection under it with a
 * FIN, without a TLS close_notify: what many servers and load balancers do after `Connection: close`.
 */
export function answerThenDropTcp(tls: TLSSocket, tcp: Socket, head: string, body: Buffer): void {
  tls.write(head, "latin1");
  tls.write(body, () => tcp.end());
}
