import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { TLSSocket } from "node:tls";
import type { Logger } from "../log/logger.js";
import type { RegistryErrorCode } from "../oci/error-body.js";
import { parseDigest } from "../oci/digest.js";
import { parseRegistryPath } from "../registry/routes.js";
import { errorReply, writeReply } from "../registry/reply.js";
import type { RegistryRequest } from "../registry/request-context.js";
import { isPeerCertificate, type PeerIdentity } from "./peer-identity.js";

/** What the peer server serves, from the replica's own parts (composed in regcache.ts). */
export interface PeerServices {
  /** fill: as if a client asked this replica (cache, else upstream with the client's credentials). */
  fill(rr: RegistryRequest, kind: "blob" | "manifest", name: string, digest: string): Promise<void>;
  /** copy: only what this replica holds for the repository; 404 otherwise. */
  copy(rr: RegistryRequest, kind: "blob" | "manifest", name: string, digest: string): Promise<void>;
  /** The recorded answer for a tag (any Accept set when the exact one is missing), as JSON. */
  tag(host: string, port: number, name: string, tag: string, acceptSet: string[]): Promise<unknown | undefined>;
  /** Keep a copy of what `from` holds. */
  replicate(from: string, host: string, port: number, kind: "blob" | "manifest", name: string, digest: string): void;
}

const HOST = /^[a-z0-9.-]{1,253}$|^[0-9a-f:.]{2,45}$/i;

function send(res: ServerResponse, status: number, code: RegistryErrorCode, message: string): void {
  writeReply(res, errorReply(status, code, message), res.req.method);
}

/**
 * The peer channel's server: its own port, mutual TLS with the root CA that every replica holds,
 * and only certificates that name a peer (peer-identity.ts). Everything else is refused with a
 * clear line in the log, and bad input gets a registry-style error, as on the proxy port.
 */
export function createPeerServer(identity: PeerIdentity, services: PeerServices, logger: Logger): Server {
  // A peer completes its handshake in milliseconds; anything slower is not a peer.
  const server = createServer({ cert: identity.certPem, key: identity.keyPem, ca: identity.caPem, requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.2", handshakeTimeout: 10_000 }, (req, res) => {
    const started = performance.now();
    res.on("close", () => logger.info({ peer: req.socket.remoteAddress, method: req.method, path: (req.url ?? "").slice(0, 300), status: res.statusCode, durationMs: Math.round(performance.now() - started) }, "peer request"));
    handle(req, res, services, logger).catch((err: unknown) => {
      logger.error({ err, path: req.url?.slice(0, 300) }, "peer request failed");
      send(res, 500, "UNSUPPORTED", "internal error in regcache");
    });
  });
  server.on("secureConnection", (socket: TLSSocket) => {
    if (isPeerCertificate(socket.getPeerCertificate())) return;
    logger.warn({ peer: socket.remoteAddress }, "peer channel: refused a certificate from our CA that is not a peer's");
    socket.destroy();
  });
  server.on("tlsClientError", (err: Error, socket: TLSSocket) => {
    logger.warn({ peer: socket.remoteAddress, err: err.message }, "peer channel: refused a client without a valid peer certificate");
    socket.destroy();
  });
  server.on("clientError", (_err, socket) => socket.destroy());
  return server;
}

async function handle(req: IncomingMessage, res: ServerResponse, services: PeerServices, logger: Logger): Promise<void> {
  const url = new URL(req.url ?? "/", "https://peer");
  if (url.pathname === "/peer/v1/health") {
    res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
    return;
  }
  const host = (url.searchParams.get("host") ?? "").toLowerCase();
  const port = Number(url.searchParams.get("port") ?? 443);
  const name = url.searchParams.get("name") ?? "";
  if (!HOST.test(host) || !Number.isInteger(port) || port < 1 || port > 65535) return send(res, 400, "NAME_INVALID", "invalid host or port");
  const route = parseRegistryPath(`/v2/${name}/manifests/latest`);
  if (route.kind !== "tag") return send(res, 400, "NAME_INVALID", "invalid repository name");
  if (url.pathname === "/peer/v1/tag") {
    const tag = url.searchParams.get("tag") ?? "";
    if (parseRegistryPath(`/v2/${name}/manifests/${tag}`).kind !== "tag") return send(res, 400, "NAME_INVALID", "invalid tag");
    const answer = await services.tag(host, port, name, tag, (url.searchParams.get("accept") ?? "").split(",").filter(Boolean));
    if (!answer) return send(res, 404, "BLOB_UNKNOWN", "no answer recorded for this tag");
    const body = JSON.stringify(answer);
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) }).end(body);
    return;
  }
  const kind = url.searchParams.get("kind");
  const digest = url.searchParams.get("digest") ?? "";
  if ((kind !== "blob" && kind !== "manifest") || !parseDigest(digest)) return send(res, 400, "DIGEST_INVALID", "invalid kind or digest");
  if (url.pathname === "/peer/v1/replicate" && req.method === "POST") {
    const from = url.searchParams.get("from") ?? "";
    if (!/^(\[[0-9a-f:.]+\]|[a-z0-9.-]+):\d{1,5}$/i.test(from)) return send(res, 400, "NAME_INVALID", "invalid peer address");
    services.replicate(from, host, port, kind, name, digest);
    res.writeHead(202).end();
    return;
  }
  if (url.pathname !== "/peer/v1/content" || (req.method !== "GET" && req.method !== "HEAD")) return send(res, 404, "UNSUPPORTED", "unknown peer endpoint");
  const mode = url.searchParams.get("mode");
  // The registry handlers read the method, the Accept and Authorization headers, and the path.
  req.url = `/v2/${name}/${kind === "blob" ? "blobs" : "manifests"}/${digest}`;
  const rr: RegistryRequest = { req, res, host, port, fromPeer: true, log: { host, method: req.method ?? "GET", path: req.url, client: req.socket.remoteAddress } };
  if (mode === "fill") await services.fill(rr, kind, name, digest);
  else if (mode === "copy") await services.copy(rr, kind, name, digest);
  else send(res, 400, "UNSUPPORTED", "mode must be fill or copy");
  logger.debug({ mode, digest, host, name }, "peer content request");
}
