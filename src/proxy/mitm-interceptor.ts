import type { IncomingMessage, ServerResponse } from "node:http";
import { rm } from "node:fs/promises";
import path from "node:path";
import type { Duplex } from "node:stream";
import { Proxy, type IContext } from "http-mitm-proxy";
import type { Logger } from "../log/logger.js";
import type { LeafMinter } from "../tls/leaf-minter.js";

export type InterceptedRequestHandler = (req: IncomingMessage, res: ServerResponse, connectTarget: string | undefined, isTls: boolean) => void;

/** The parts of http-mitm-proxy's Proxy we drive, some of them internal (see class comment). */
interface MitmInternals {
  _onHttpServerConnect(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  sslServers: Record<string, unknown>;
  httpsServer?: { _contexts?: unknown[] };
}

/**
 * http-mitm-proxy, fenced in as DESIGN.md describes:
 * - its servers listen on 127.0.0.1 only; the public port is ours (front-server.ts),
 *   which applies policy and hands it only the CONNECTs to intercept;
 * - forceSNI: one internal HTTPS server for all hosts, not one server and port per host;
 * - certificates come from our LeafMinter (its own mint negative serials about
 *   half the time and block the event loop with RSA key generation);
 * - requests are answered in onRequest and never handed back to it, and no
 *   onRequestData/onResponseData filter is registered (no backpressure there).
 */
export class MitmInterceptor {
  private readonly mitm = new Proxy();

  constructor(
    private readonly minter: LeafMinter,
    private readonly scratchDir: string,
    private readonly onRequest: InterceptedRequestHandler,
    private readonly logger: Logger,
  ) {}

  async start(): Promise<void> {
    const mitm = this.mitm;
    const neverOnDisk = path.join(this.scratchDir, "no-such-dir");
    // Pointing at files that never exist makes it call onCertificateMissing, where we mint.
    mitm.onCertificateRequired = (hostname, callback) =>
      callback(null, { keyFile: path.join(neverOnDisk, "leaf.key"), certFile: path.join(neverOnDisk, "leaf.crt"), hosts: [hostname] });
    mitm.onCertificateMissing = (ctx, _files, callback) => {
      try {
        const leaf = this.minter.leafFor(ctx.hostname);
        callback(null, { keyFileData: leaf.keyPem, certFileData: leaf.certPem, hosts: [ctx.hostname] } as never);
      } catch (err) {
        callback(err as Error, undefined as never);
      }
    };
    mitm.onError((ctx: IContext | null, err, kind) => {
      const code = (err as NodeJS.ErrnoException | undefined)?.code;
      if (code === "ECONNRESET" || code === "EPIPE") return;
      this.logger.debug({ kind, err: err?.message, path: ctx?.clientToProxyRequest?.url }, "http-mitm-proxy error");
    });
    mitm.onRequest((ctx) => {
      this.onRequest(ctx.clientToProxyRequest, ctx.proxyToClientResponse, ctx.connectRequest?.url, ctx.isSSL);
    });
    // listen() insists on creating its own CA in sslCaDir before it starts; that CA is never
    // used (we supply every certificate), so it goes to scratch space and is deleted at once.
    const sslCaDir = path.join(this.scratchDir, "http-mitm-proxy");
    await new Promise<void>((resolve, reject) =>
      mitm.listen({ host: "127.0.0.1", port: 0, forceSNI: true, sslCaDir, keepAlive: true }, (err?: unknown) => (err ? reject(err as Error) : resolve())),
    );
    await rm(sslCaDir, { recursive: true, force: true });
    // Garbage inside a tunnel (bad TLS, bad HTTP) closes that connection only; the library logs but leaves it open.
    for (const server of [mitm.httpsServer, mitm.httpServer]) server?.on("clientError", (_err: Error, socket: Duplex) => socket.destroy());
  }

  /** Takes a CONNECT the policy chose to intercept: answers 200, then terminates TLS with a leaf for the host. */
  intercept(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    (this.mitm as unknown as MitmInternals)._onHttpServerConnect(req, socket, head);
  }

  /**
   * http-mitm-proxy registers a host's certificate once and never asks again; to
   * re-mint before expiry, forget hosts the minter wants renewed so their next
   * CONNECT asks for a certificate again (the newest SNI context wins in Node).
   */
  renewDueLeaves(): void {
    const internals = this.mitm as unknown as MitmInternals;
    for (const host of this.minter.hostsDueForRenewal()) delete internals.sslServers[host];
  }

  close(): void {
    this.mitm.close();
  }
}
