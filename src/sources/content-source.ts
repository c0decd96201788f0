import type { Readable } from "node:stream";
import type { Download } from "../cache/download.js";
import type { PeerContentRequest } from "../cluster/peer-client.js";
import { MAX_MANIFEST_BYTES, OCTET_STREAM } from "../oci/media-types.js";
import type { AccessDecision } from "../registry/access-control.js";
import type { ContentTarget } from "../registry/content-target.js";
import { contentRange } from "../registry/range.js";
import type { CacheStatus, RegistryRequest } from "../registry/request-context.js";
import type { UpstreamResponse } from "../upstream/client.js";
import { headerValue } from "../upstream/headers.js";
import { UpstreamError } from "../upstream/upstream-error.js";

/**
 * Where a fill's bytes came from, which decides what follows it: upstream's or a peer's fill
 * (`owner`, `holder`) confirms the client's credentials; `store` and `copy` are cached copies.
 */
export type ContentVia = "store" | "copy" | "owner" | "holder" | "upstream";

/** What a client is refused: upstream's own answer, relayed, or an access decision regcache made. */
export type Refusal = { kind: "upstream"; response: UpstreamResponse } | { kind: "access"; decision: AccessDecision };

/** Bytes of a digest from one source, from the offset asked for to the end. */
export interface SourceBody {
  kind: "body";
  /** What the request asked for: the cache keeps the bytes as that (blob-store.ts: OpenResult). */
  content: "blob" | "manifest";
  body: Readable;
  /** The whole content's size, when the source declared it (always, for an offset other than 0). */
  size: number | undefined;
  /**
   * A blob's OCTET_STREAM; a manifest's type as the source labelled it for the repository asked:
   * the client that started the fill gets it as the upstream's answer, and the cache keeps it only
   * as that repository's label (cache/manifest-types.ts).
   */
  mediaType: string;
  /** Who sent the bytes, for the download's errors (a CDN after a redirect, a peer, the store). */
  host: string;
  maxSize?: number;
  /** What the client's response says it was (X-Cache). */
  cache: CacheStatus;
}

/** A source's refusal; `unavailable`: it says nothing about the client (a 5xx, a 429), and the next source is asked. */
export interface SourceRefusal {
  kind: "refused";
  refusal: Refusal;
  unavailable: boolean;
}

export type SourceAnswer = SourceBody | SourceRefusal;

/** One place a digest's bytes can come from, for one request (rr, target), in a chain (source-chain.ts). */
export interface ContentSource {
  readonly via: ContentVia;
  /** Names it in the log: "object store", "peer 10.0.0.7:3129", "upstream quay.io". */
  readonly name: string;
  /**
   * Opens the content from byte `offset`: at 0, the whole content, a refusal, or undefined when
   * this source does not hold it; beyond 0 (continuing what another source began, `size` bytes in
   * all), the rest of exactly that content or undefined. Rejects when the source cannot be reached.
   */
  open(offset: number, size?: number): Promise<SourceAnswer | undefined>;
  /**
   * Once a fill this source began has settled into `download` (undefined: no fill came of it, or
   * another source's bytes began it): what the source does about it (upload, replicate, release).
   */
  settled?(download: Download | undefined): void;
}

/** A source asked to continue from `offset` answers 206 with exactly the rest of the content. */
export function continuesAt(response: UpstreamResponse, offset: number, size: number): boolean {
  return response.statusCode === 206 && headerValue(response.headers["content-range"]) === contentRange({ start: offset, end: size - 1 }, size);
}

/** The header that asks a source for the bytes from `offset` on; none for the whole content. */
export function rangeFrom(offset: number): Record<string, string> {
  return offset > 0 ? { range: `bytes=${offset}-` } : {};
}

/**
 * A 200 from upstream or a peer as a fill's body, of the kind the request asked for: its declared
 * size; a blob as octets, a manifest as the Content-Type its source gave it for this repository.
 * A manifest declared over the limit is refused.
 */
export function bodyOf(target: ContentTarget, response: UpstreamResponse, host: string, cache: CacheStatus): SourceBody {
  const length = headerValue(response.headers["content-length"]);
  const size = length !== undefined && /^\d+$/.test(length) ? Number(length) : undefined;
  if (target.kind === "blob") return { kind: "body", content: "blob", body: response.body, size, mediaType: OCTET_STREAM, host, cache };
  if (size !== undefined && size > MAX_MANIFEST_BYTES) {
    response.body.destroy();
    throw new UpstreamError("protocol", host, `manifest of ${size} bytes is over the ${MAX_MANIFEST_BYTES}-byte limit`);
  }
  return { kind: "body", content: "manifest", body: response.body, size, mediaType: headerValue(response.headers["content-type"]) ?? OCTET_STREAM, host, maxSize: MAX_MANIFEST_BYTES, cache };
}

/** A continuation's 206 as the rest of a body another source began, `size` bytes in all (only its bytes are read). */
export function continuation(target: ContentTarget, response: UpstreamResponse, host: string, size: number, cache: CacheStatus): SourceBody {
  return { kind: "body", content: target.kind, body: response.body, size, mediaType: headerValue(response.headers["content-type"]) ?? OCTET_STREAM, host, cache };
}

/** What every source is asked for: the request and the content it wants. */
export interface SourceRequest {
  rr: RegistryRequest;
  target: ContentTarget;
}

/** What a peer may pass on from the client: its credentials and what it accepts, nothing else. */
const FORWARDED_TO_PEERS = ["authorization", "accept", "user-agent"];

/** The request to a peer for this content, with the client's credentials and Accept (and `extra`, e.g. a Range). */
export function peerRequest({ rr, target }: SourceRequest, extra: Record<string, string> = {}): Omit<PeerContentRequest, "mode"> {
  const headers: Record<string, string> = {};
  for (const name of FORWARDED_TO_PEERS) {
    const value = headerValue(rr.req.headers[name]);
    if (value) headers[name] = value;
  }
  return { kind: target.kind, host: rr.host, port: rr.port, name: target.name, digest: target.digest.value, headers: { ...headers, ...extra } };
}
