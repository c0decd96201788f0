import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import type { Logger } from "../log/logger.js";
import type { RegistryErrorCode } from "../oci/error-body.js";
import { parseDigest } from "../oci/digest.js";
import { parseRegistryPath } from "../registry/routes.js";
import { errorReply, writeReply } from "../registry/reply.js";
import type { RegistryRequest } from "../registry/request-context.js";
import { CLOCK_SKEW_MS } from "../cache/shared-records.js";
import { parseTagAnswer, type PeerTagAnswer, type ReplicatedTag } from "./peer-client.js";
import { isPeerCertificate, PEER_CIPHERS, type PeerIdentity } from "./peer-identity.js";
import type { RefusalLog } from "./refusal-log.js";

/** What the peer server serves, from the replica's own parts (composed in regcache.ts). */
export interface PeerServices {
  /** fill: as if a client asked this replica (cache, else upstream with the client's credentials). */
  fill(rr: RegistryRequest, kind: "blob" | "manifest", name: string, digest: string): Promise<void>;
  /** copy: only what this replica holds for the repository; 404 otherwise. */
  copy(rr: RegistryRequest, kind: "blob" | "manifest", name: string, digest: string): Promise<void>;
  /** The recorded answer for a tag (any Accept set when the exact one is missing). */
  tag(host: string, port: number, name: string, tag: string, acceptSet: string[]): Promise<PeerTagAnswer | undefined>;
  /** Keep a copy of what `from` holds. */
  replicate(from: string, host: string, port: number, kind: "blob" | "manifest", name: string, digest: string): void;
  /** Keep a tag answer `from` recorded (the second copy, cluster.ts replicateTag), if it is newer than what is held. */
  keepTag(from: string, answer: ReplicatedTag): void;
}

const HOST = /^[a-z0-9.-]{1,253}$|^[0-9a-f:.]{2,45}$/i;
const PEER_ADDRESS = /^(\[[0-9a-f:.]+\]|[a-z0-9.-]+):\d{1,5}$/i;
/** A tag answer is a few hundred bytes of JSON. */
const MAX_TAG_BODY = 16 * 1024;
/** The TLS verify codes of a certificate that does not chain to the CA given (one from another CA). */
const OTHER_CA = new Set(["UNABLE_TO_VERIFY_LEAF_SIGNATURE", "UNABLE_TO_GET_ISSUER_CERT", "UNABLE_TO_GET_ISSUER_CERT_LOCALLY", "SELF_SIGNED_CERT_IN_CHAIN", "DEPTH_ZERO_SELF_SIGNED_CERT", "CERT_SIGNATURE_FAILURE"]);

function send(res: ServerResponse, status: number, code: RegistryErrorCode, message: string): void {
  writeReply(res, errorReply(status, code, message), res.req.method);
}

/**
 * The peer channel's server: its own port, mutual TLS with the root CA that every replica holds,
 * and only certificates that name a peer (peer-identity.ts). Everything else is refused, counted
 * and logged by cause (refusal-log.ts), and bad input gets a registry-style error, as on the proxy port.
 */
export function createPeerServer(identity: PeerIdentity, services: PeerServices, logger: Logger, refusals: RefusalLog): Server {
  // A peer completes its handshake in milliseconds; anything slower is not a peer.
  const server = createServer({ cert: identity.certPem, key: identity.keyPem, ca: identity.caPem, requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.2", ciphers: PEER_CIPHERS, handshakeTimeout: 10_000 }, (req, res) => {
    const started = performance.now();
    res.on("close", () => logger.info({ peer: req.socket.remoteAddress, method: req.method, path: (req.url ?? "").slice(0, 300), status: res.statusCode, durationMs: Math.round(performance.now() - started) }, "peer request"));
    handle(req, res, services, logger).catch((err: unknown) => {
      logger.error({ err, path: req.url?.slice(0, 300) }, "peer request failed");
      send(res, 500, "UNSUPPORTED", "internal error in regcache");
    });
  });
  // A socket the TLS layer destroyed no longer knows its client: the address is taken as the connection arrives.
  const clients = new WeakMap<Socket, string | undefined>();
  server.prependListener("connection", (socket: Socket) => clients.set(socket, socket.remoteAddress));
  server.on("secureConnection", (socket: TLSSocket) => {
    if (isPeerCertificate(socket.getPeerCertificate())) return;
    refusals.note("not-a-peer", socket.remoteAddress);
    socket.destroy();
  });
  server.on("tlsClientError", (err: NodeJS.ErrnoException, socket: TLSSocket) => {
    // The TLS socket wraps the TCP one (Node's _parent), whose address was kept above.
    const client = socket.remoteAddress ?? clients.get((socket as unknown as { _parent: Socket })._parent);
    const verifyError = socket.authorizationError as unknown as string | undefined;
    if (err.code === "ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE") refusals.note("no-certificate", client);
    else if (verifyError) refusals.note(OTHER_CA.has(verifyError) ? "other-ca" : "unverified-certificate", client, verifyError);
    else refusals.note("handshake", client, err.code ?? err.message);
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
    const acceptSet = (url.searchParams.get("accept") ?? "").split(",").filter(Boolean);
    if (req.method === "POST") {
      const from = url.searchParams.get("from") ?? "";
      if (!PEER_ADDRESS.test(from)) return send(res, 400, "NAME_INVALID", "invalid peer address");
      const answer = parseTagAnswer(await readJson(req, MAX_TAG_BODY).catch(() => undefined));
      if (!answer || !parseDigest(answer.digest) || answer.recorded > Date.now() + CLOCK_SKEW_MS) return send(res, 400, "TAG_INVALID", "invalid tag answer");
      const { publicSince, ...entry } = answer;
      services.keepTag(from, { host, port, name, tag, acceptSet, entry, publicSince });
      res.writeHead(202).end();
      return;
    }
    const answer = await services.tag(host, port, name, tag, acceptSet);
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
    if (!PEER_ADDRESS.test(from)) return send(res, 400, "NAME_INVALID", "invalid peer address");
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
  logger.debug({ mode, digest, host, repository: name }, "peer content request");
}

/** A request's JSON body, up to `limit` bytes; rejects when it is larger or not JSON. */
async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new Error(`body over ${limit} bytes`);
    chunks.push(chunk);
  }
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}
