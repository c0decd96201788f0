import { Agent, type Dispatcher } from "undici";
import type { TagEntry } from "../cache/cache-index.js";
import { withQuietBody } from "../util/quiet-body.js";
import { isPeerCertificate, type PeerIdentity } from "./peer-identity.js";

/**
 * fill: the owner of a digest serves it from its cache or fills it from upstream, as a client's
 * request would (the client's Authorization travels with it). copy: a peer hands over what it
 * already holds for that repository, and nothing else; used when upstream cannot be reached.
 */
export type PeerMode = "fill" | "copy";

export interface PeerContentRequest {
  kind: "blob" | "manifest";
  host: string;
  port: number;
  name: string;
  digest: string;
  mode: PeerMode;
  headers: Record<string, string>;
}

export interface PeerTagRequest {
  host: string;
  port: number;
  name: string;
  tag: string;
  acceptSet: readonly string[];
}

/** A peer's recorded answer for a tag, with when it last found the repository public (absent: not known public). */
export type PeerTagAnswer = TagEntry & { publicSince?: number };

/** A tag answer a replica recorded from upstream, sent to the replica that keeps its second copy. */
export interface ReplicatedTag extends PeerTagRequest {
  entry: TagEntry;
  publicSince?: number;
}

/** Answers within these bounds, or the peer counts as unreachable and the next source is tried. */
const PEER_CONNECT_MS = 2_000;
const PEER_HEADERS_MS = 30_000;
const PEER_BODY_IDLE_MS = 60_000;
/** A tag lookup runs while a client waits during an outage: a peer that does not answer at once is skipped. */
const PEER_TAG_MS = 3_000;

/** The replica's side of the peer channel: mutual TLS with certificates from the shared root CA. */
export class PeerClient {
  private readonly agent: Agent;

  constructor(identity: PeerIdentity) {
    this.agent = new Agent({
      keepAliveTimeout: 30_000,
      connect: {
        ca: identity.caPem,
        cert: identity.certPem,
        key: identity.keyPem,
        rejectUnauthorized: true,
        timeout: PEER_CONNECT_MS,
        // Peers are reached by address; what matters is that the certificate is a peer's from our CA.
        checkServerIdentity: (_host, cert) => (isPeerCertificate(cert) ? undefined : new Error("the peer's certificate is not a regcache peer certificate")),
      },
    });
  }

  async health(address: string): Promise<void> {
    const response = await this.request(address, "GET", "/peer/v1/health", {});
    await response.body.dump();
    if (response.statusCode !== 200) throw new Error(`health answered ${response.statusCode}`);
  }

  content(address: string, req: PeerContentRequest, method: "GET" | "HEAD" = "GET"): Promise<Dispatcher.ResponseData> {
    const query = new URLSearchParams({ kind: req.kind, host: req.host, port: String(req.port), name: req.name, digest: req.digest, mode: req.mode });
    return this.request(address, method, `/peer/v1/content?${query}`, req.headers);
  }

  async tag(address: string, req: PeerTagRequest): Promise<PeerTagAnswer | undefined> {
    const response = await this.request(address, "GET", `/peer/v1/tag?${tagQuery(req)}`, {}, PEER_TAG_MS);
    if (response.statusCode !== 200) {
      await response.body.dump();
      return undefined;
    }
    return parseTagAnswer(await response.body.json());
  }

  /** Hands a tag answer this replica recorded to the peer that keeps its second copy (it answers 202 at once). */
  async pushTag(address: string, answer: ReplicatedTag, from: string): Promise<void> {
    const body = JSON.stringify({ ...answer.entry, publicSince: answer.publicSince });
    const response = await this.agent.request({
      origin: `https://${address}`,
      path: `/peer/v1/tag?${tagQuery(answer)}&${new URLSearchParams({ from })}`,
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
      headersTimeout: PEER_TAG_MS,
      bodyTimeout: PEER_TAG_MS,
    });
    await response.body.dump();
    if (response.statusCode !== 202) throw Object.assign(new Error(`tag copy answered ${response.statusCode}`), { code: `HTTP_${response.statusCode}` });
  }

  /** Asks a peer to keep a copy of what this replica holds, so that losing one replica loses nothing. */
  async replicate(address: string, req: Omit<PeerContentRequest, "mode" | "headers">, from: string): Promise<void> {
    const query = new URLSearchParams({ kind: req.kind, host: req.host, port: String(req.port), name: req.name, digest: req.digest, from });
    const response = await this.request(address, "POST", `/peer/v1/replicate?${query}`, {});
    await response.body.dump();
  }

  private async request(address: string, method: Dispatcher.HttpMethod, path: string, headers: Record<string, string>, timeoutMs?: number): Promise<Dispatcher.ResponseData> {
    return withQuietBody(await this.agent.request({ origin: `https://${address}`, path, method, headers, headersTimeout: timeoutMs ?? PEER_HEADERS_MS, bodyTimeout: timeoutMs ?? PEER_BODY_IDLE_MS, highWaterMark: 1024 * 1024 }));
  }

  async destroy(): Promise<void> {
    await this.agent.destroy();
  }
}

function tagQuery(req: PeerTagRequest): URLSearchParams {
  return new URLSearchParams({ host: req.host, port: String(req.port), name: req.name, tag: req.tag, accept: req.acceptSet.join(",") });
}

/** A tag answer as the peer channel carries it (JSON from another replica), or undefined when it is not one. */
export function parseTagAnswer(value: unknown): PeerTagAnswer | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const { digest, mediaType, size, recorded, publicSince } = value as Record<string, unknown>;
  if (typeof digest !== "string" || digest.length > 200 || typeof mediaType !== "string" || mediaType.length > 255) return undefined;
  if (!Number.isSafeInteger(size) || (size as number) < 0 || !Number.isFinite(recorded)) return undefined;
  if (publicSince !== undefined && !Number.isFinite(publicSince)) return undefined;
  const entry = { digest, mediaType, size: size as number, recorded: recorded as number };
  return publicSince === undefined ? entry : { ...entry, publicSince: publicSince as number };
}
