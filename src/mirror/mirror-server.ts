import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from "node:http";
import { createServer as createNetServer, isIP, type AddressInfo, type Server as NetServer, type Socket } from "node:net";
import { createSecureContext, TLSSocket, type SecureContext } from "node:tls";
import type { Duplex } from "node:stream";
import type { MirrorConfig } from "../config/config.js";
import type { Logger } from "../log/logger.js";
import { registryErrorBody } from "../oci/error-body.js";
import type { Lifecycle } from "../proxy/lifecycle.js";
import type { CertificateAuthority } from "../tls/ca.js";
import type { Leaf, LeafMinter } from "../tls/leaf-minter.js";
import { isPermittedByConstraints } from "../tls/name-constraints.js";
import { RegcacheError, systemReason } from "../errors.js";

/** Go clients keep idle connections 90 s; a server that closes first races their next request (mitm-interceptor.ts). */
const KEEP_ALIVE_MS = 95_000;
/** Request heads larger than this are refused: registry requests carry a token and a few headers. */
const MAX_HEADER_BYTES = 32 * 1024;
/** A connection with no bytes either way for this long is closed (a stalled handshake, an idle client). */
const IDLE_MS = 120_000;
/** The first byte of a TLS handshake record (RFC 8446 section 5.1, ContentType handshake). */
const TLS_HANDSHAKE = 0x16;

export interface MirrorServerDeps {
  ca: CertificateAuthority;
  minter: LeafMinter;
  lifecycle: Lifecycle;
  maxConnections: number;
  onRequest: (req: IncomingMessage, res: ServerResponse) => void;
  logger: Logger;
}

/**
 * The mirror port: HTTP/1.1, over TLS with one leaf from regcache's CA for every --mirror-name,
 * or plain with --mirror-plain-http. Each connection's TLS layer is made here (as the interceptor
 * makes it for a CONNECT), so a leaf renewed with its issuer serves the next connection, and a
 * client that speaks plain HTTP to the TLS port is told so in a registry error, not cut off.
 */
export class MirrorServer {
  private readonly http: HttpServer;
  private readonly net: NetServer;
  private context: { leaf: Leaf; context: SecureContext } | undefined;
  private readonly names: string[];

  constructor(
    private readonly config: MirrorConfig,
    private readonly deps: MirrorServerDeps,
  ) {
    // The subject is a DNS name when there is one: IP literals are named by the SAN alone.
    this.names = [...config.names.filter((n) => isIP(n) === 0), ...config.names.filter((n) => isIP(n) !== 0)];
    const outside = this.names.filter((n) => isIP(n) === 0 && !isPermittedByConstraints(n, deps.ca.permittedDomains));
    if (outside.length > 0) {
      throw new RegcacheError("CONFIG", `--mirror-name ${outside.join(", ")} is outside the CA's name constraints (${deps.ca.permittedDomains.join(", ")}): clients would refuse the mirror's certificate`);
    }
    this.http = createHttpServer({ maxHeaderSize: MAX_HEADER_BYTES, requestTimeout: 0, headersTimeout: KEEP_ALIVE_MS + 5_000, keepAliveTimeout: KEEP_ALIVE_MS });
    this.http.on("request", deps.onRequest);
    this.http.on("clientError", (_err: Error, socket: Duplex) => {
      if (socket.writable) socket.end(plainErrorResponse("UNSUPPORTED", "malformed HTTP request"));
      socket.destroy();
    });
    this.net = createNetServer((socket) => this.accept(socket));
    this.net.maxConnections = deps.maxConnections;
  }

  /** Listens; resolves with the port (the one asked for, or the one given for port 0). */
  async listen(): Promise<number> {
    const { host, port } = this.config.listen;
    await new Promise<void>((resolve, reject) => {
      this.net.once("error", reject);
      this.net.listen(port, host, () => {
        this.net.off("error", reject);
        resolve();
      });
    }).catch((err: unknown) => {
      throw new RegcacheError("LISTEN", `cannot listen on ${host}:${port} (--mirror-listen): ${systemReason(err)}`, { cause: err });
    });
    return (this.net.address() as AddressInfo).port;
  }

  /** Stops accepting connections; those open go on (shutdown waits for them). */
  stopAccepting(): void {
    this.net.close();
  }

  closeAllConnections(): void {
    this.http.closeAllConnections();
  }

  private accept(socket: Socket): void {
    socket.setTimeout(IDLE_MS, () => socket.destroy());
    socket.on("error", () => socket.destroy());
    this.deps.lifecycle.trackTunnel(socket);
    if (this.config.plainHttp) {
      this.http.emit("connection", socket);
      return;
    }
    socket.once("data", (first: Buffer) => {
      socket.pause();
      socket.unshift(first);
      if (first[0] !== TLS_HANDSHAKE) {
        socket.end(plainErrorResponse("UNSUPPORTED", "this is regcache's mirror port, which speaks TLS: use https://"));
        return;
      }
      const tlsSocket = new TLSSocket(socket, { isServer: true, secureContext: this.currentContext(), ALPNProtocols: ["http/1.1"] });
      // A node that does not trust the CA, or reached the mirror by a name not in --mirror-name, ends here.
      tlsSocket.on("error", (err: NodeJS.ErrnoException) => {
        this.deps.logger.debug({ client: socket.remoteAddress, code: err.code, err: err.message }, "mirror TLS connection failed");
        tlsSocket.destroy();
      });
      tlsSocket.once("secure", () => this.http.emit("connection", tlsSocket));
    });
  }

  /** The context of the current leaf: a leaf lives as long as its issuer, then a new one is minted. */
  private currentContext(): SecureContext {
    const leaf = this.deps.minter.leafForNames(this.names);
    if (this.context?.leaf !== leaf) this.context = { leaf, context: createSecureContext({ key: leaf.keyPem, cert: leaf.chainPem }) };
    return this.context.context;
  }
}

/**
 * The mirror's URL as nodes should use it (node-setup.sh --mirror): its first --mirror-name, or
 * with plain HTTP the host of `authority` (how the node reached the proxy port).
 */
export function mirrorUrl(config: MirrorConfig, port: number, authority: string): string {
  const name = config.names[0];
  const host = name === undefined ? authority.replace(/:\d+$/, "") : isIP(name) === 6 ? `[${name}]` : name;
  return `${config.plainHttp ? "http" : "https"}://${host}:${port}`;
}

/** A registry error on a connection that has no HTTP server behind it, closed after. */
function plainErrorResponse(code: "UNSUPPORTED", message: string): string {
  const body = registryErrorBody(code, message);
  return `HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}
