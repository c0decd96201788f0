import type { IncomingMessage, ServerResponse } from "node:http";
import type { UncachedReason } from "../cache/blob-store.js";
import type { ForwardReason } from "./request-judgement.js";

/** PEER: this replica lacked it, and another replica's cache supplied it; SHARED: the fleet's object store did. */
export type CacheStatus = "HIT" | "MISS" | "COALESCED" | "STALE" | "BYPASS" | "PEER" | "SHARED";

/** Why a response was cut before its end: its bytes did not match their digest or length, its download was given up, or its source failed. */
export type CutReason = "digest-mismatch" | "size-mismatch" | "download-aborted" | "source-failed";

/** What the one log line per completed request says, filled in as the request is handled. */
export interface RequestLogFields {
  host: string;
  method: string;
  path: string;
  repository?: string;
  digest?: string;
  tag?: string;
  kind?: "blob" | "manifest" | "tag" | "ping" | "other";
  cache?: CacheStatus;
  /** Why a body was streamed through without being cached. */
  uncached?: UncachedReason;
  /** Why the request went to the upstream as it is (request-judgement.ts), its answer relayed uncached. */
  forwarded?: ForwardReason;
  upstreamStatus?: number;
  upstreamHost?: string;
  client?: string;
  /** How access to cached content was settled (see AccessControl). */
  access?: string;
  /** This request shared the tag revalidation another request of its scope had in flight (tag-revalidations.ts). */
  coalesced?: boolean;
  /** Why the fleet's object store could not hand over content it holds (the request went on to the other sources). */
  sharedError?: string;
  /** Why regcache cut the response short (proxy/response-cut.ts), and the error that said so. */
  cut?: CutReason;
  cutReason?: string;
  /** Still streaming when the shutdown grace period (--shutdown-grace) ran out, and cut. */
  cutAtShutdown?: boolean;
  /** Came in on the mirror port, not through CONNECT: how it named its upstream (src/mirror/mirror-target.ts). */
  mirror?: "ns" | "path" | "default";
}

export interface RegistryRequest {
  req: IncomingMessage;
  res: ServerResponse;
  /** The CONNECT target: the only upstream this request may go to. */
  host: string;
  port: number;
  log: RequestLogFields;
  /** Asked by another replica over the peer channel: answered here, never forwarded to peers again. */
  fromPeer?: boolean;
}

const CACHE_STATUS_FIELD: Record<CacheStatus, string> = {
  HIT: "regcache; hit",
  MISS: "regcache; fwd=miss; stored",
  COALESCED: "regcache; fwd=miss; collapsed",
  STALE: "regcache; hit; detail=stale",
  BYPASS: "regcache; fwd=bypass",
  PEER: "regcache; fwd=peer; stored",
  SHARED: "regcache; fwd=shared; stored",
};

/** Answers that did not cost this request an upstream fetch (a coalesced request shares another's). */
export function servedFromCache(cache: CacheStatus | undefined): boolean {
  return cache === "HIT" || cache === "STALE" || cache === "COALESCED" || cache === "PEER" || cache === "SHARED";
}

/** X-Cache for people and scripts, RFC 9211 Cache-Status for tools that know it. */
export function cacheStatusHeaders(status: CacheStatus): Record<string, string> {
  return { "x-cache": status, "cache-status": CACHE_STATUS_FIELD[status] };
}
