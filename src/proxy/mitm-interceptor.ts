import type { IncomingMessage, ServerResponse } from "node:http";
import { rm } from "node:fs/promises";
import type { Socket } from "node:net";
import { TLSSocket, type SecureContext } from "node:tls";
import path from "node:path";
import type { Duplex } from "node:stream";
import { Proxy, type IContext } from "http-mitm-proxy";
import type { Logger } from "../log/logger.js";
import type { Leaf, LeafMinter } from "../tls/leaf-minter.js";
import { ServerContextFactory } from "../tls/server-context-factory.js";
import { LruMap } from "../util/lru-map.js";

export type InterceptedRequestHandler = (req: IncomingMessage, res: ServerResponse, connectTarget: string | undefined, isTls: boolean) => void;

/** The parts of http-mitm-proxy's Proxy we drive, some of them internal (see class comment). */
interface MitmInternals {
  _onError(kind: string, ctx: IContext | null, err: Error | undefined): void;
  httpsServer?: {
    emit(event: "secureConnection", socket: Duplex): boolean;
  };
}

const KEEP_ALIVE_MS = 95_000;
const TLS_CONTEXTS_KEPT = 128;

/** The CONNECT target of a raw client socket, found again from the TLS socket that wraps it. */
const connectTargets = new WeakMap<object, string>();

/**
 * http-mitm-proxy, fenced in:
 * - its servers listen on 127.0.0.1 only; the public port is ours (front-server.ts),
 *   which applies policy and hands it only the CONNECTs to intercept;
 * - forceSNI: one internal HTTPS server for all hosts, not one server and port per host;
 * - certificates come from our LeafMinter (its own mint negative serials about
 *   half the time and block the event loop with RSA key generation);
 * - requests are answered in onRequest and never handed back to it, and no
 *   onRequestData/onResponseData filter is registered (no backpressure there).
 *
 * Its socket plumbing is replaced: its CONNECT handling opens a second TCP connection over
 * loopback to its own HTTPS server and pipes the two, which cost ~25% of warm-blob
 * throughput here (bench/). Instead the client socket gets its TLS layer here (terminate)
 * and joins that same HTTPS server once the handshake is done.
 */
export class MitmInterceptor {
  private readonly mitm = new Proxy();
  private readonly contextFactory = new ServerContextFactory();
  /**
   * A TLS context per host, built once per leaf: even made from a spare that holds the key
   * already (ServerContextFactory), parsing the chain costs 0.3–1 ms. Each holds ~50 KB of
   * OpenSSL memory (measured: 900 fewer saved ~45 MB of RSS), twenty times a leaf, so fewer are
   * kept: clients connect to registry hosts only (regcache follows redirects itself), a few
   * dozen even for a large fleet.
   */
  private readonly contexts = new LruMap<string, { leaf: Leaf; context: SecureContext }>(TLS_CONTEXTS_KEPT);

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
      let leaf: Leaf;
      try {
        leaf = this.minter.leafFor(ctx.hostname);
      } catch (err) {
        callback(err as Error, undefined as never);
        return;
      }
      callback(null, { keyFileData: leaf.keyPem, certFileData: leaf.chainPem, hosts: [ctx.hostname] } as never);
    };
    // Its own error path prints stacks with console.error and writes "504 Proxy Error" into
    // responses that are ours to answer. Errors it sees (a client gone mid-request or
    // mid-response, bad TLS) end that exchange only: regcache's handlers see the same event
    // on the request or response and answer or log it once.
    (mitm as unknown as MitmInternals)._onError = (kind, ctx, err) => {
      this.logger.debug({ kind, code: (err as NodeJS.ErrnoException | undefined)?.code, err: err?.message, path: ctx?.clientToProxyRequest?.url?.slice(0, 200) }, "http-mitm-proxy error");
    };
    mitm.onRequest((ctx) => {
      const req = ctx.clientToProxyRequest;
      const raw = (req.socket as Socket & { _parent?: object })._parent;
      const target = ctx.connectRequest?.url ?? (raw ? connectTargets.get(raw) : undefined);
      this.onRequest(req, ctx.proxyToClientResponse, target, ctx.isSSL);
    });
    // listen() insists on creating its own CA in sslCaDir before it starts; that CA is never
    // used (we supply every certificate), so it goes to scratch space and is deleted at once.
    const sslCaDir = path.join(this.scratchDir, "http-mitm-proxy");
    await new Promise<void>((resolve, reject) =>
      mitm.listen({ host: "127.0.0.1", port: 0, forceSNI: true, sslCaDir, keepAlive: true }, (err?: unknown) => (err ? reject(err as Error) : resolve())),
    );
    await rm(sslCaDir, { recursive: true, force: true });
    for (const server of [mitm.httpsServer, mitm.httpServer]) {
      if (!server) continue;
      // Garbage inside a tunnel (bad TLS, bad HTTP) closes that connection only; the library logs but leaves it open.
      server.on("clientError", (_err: Error, socket: Duplex) => socket.destroy());
      // Go clients keep idle connections 90 s; a server that closes first races their next
      // request, which then fails with EOF instead of being retried.
      server.keepAliveTimeout = KEEP_ALIVE_MS;
      server.headersTimeout = KEEP_ALIVE_MS + 5_000;
    }
  }

  /** Takes a CONNECT the policy chose to intercept: answers 200, then terminates TLS with a leaf for the host. */
  intercept(req: IncomingMessage, socket: Duplex, head: Buffer, host: string): void {
    const server = (this.mitm as unknown as MitmInternals).httpsServer;
    if (!server) {
      socket.destroy();
      return;
    }
    connectTargets.set(socket, req.url ?? "");
    // A client may send its ClientHello right behind the CONNECT; the TLS layer must read it first.
    if (head.length > 0) socket.unshift(head);
    socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
    let leaf: Leaf;
    try {
      leaf = this.minter.leafFor(host);
    } catch (err) {
      this.logger.error({ err, host }, "cannot mint a certificate");
      socket.destroy();
      return;
    }
    // No byte is read here: the TLS layer must read the ClientHello from the socket itself.
    // Anything that is not TLS fails the handshake and closes this connection only.
    this.terminate(server, socket, this.contextFor(leaf));
  }

  /**
   * The CONNECT target names the host before the ClientHello arrives, so the connection's
   * TLS layer gets that host's leaf as its only certificate: no SNI lookup, which also
   * serves IP literals (clients send no SNI for them, RFC 6066 section 3). Node's
   * alternative, tls.Server#addContext, keeps every context it is given for the life of
   * the server and scans them all on each handshake; an SNICallback can only be given when
   * the server is constructed, which http-mitm-proxy does. A handshake that stalls is cut by
   * the tunnel's idle timeout (front-server.ts), as the server's own would have cut it.
   */
  private terminate(server: NonNullable<MitmInternals["httpsServer"]>, socket: Duplex, secureContext: SecureContext): void {
    const tlsSocket = new TLSSocket(socket, { isServer: true, secureContext, ALPNProtocols: ["http/1.1"] });
    tlsSocket.on("error", () => tlsSocket.destroy());
    tlsSocket.once("secure", () => server.emit("secureConnection", tlsSocket));
  }

  /** The host's TLS context for this leaf; a re-minted leaf replaces its host's context. */
  private contextFor(leaf: Leaf): SecureContext {
    const known = this.contexts.get(leaf.host);
    if (known?.leaf === leaf) return known.context;
    const context = this.contextFactory.contextFor(leaf.keyPem, leaf.chainPem);
    this.contexts.set(leaf.host, { leaf, context });
    return context;
  }

  close(): void {
    this.contextFactory.close();
    this.mitm.close();
  }
}
