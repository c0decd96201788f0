import type { Readable } from "node:stream";
import type { RangeSource } from "../cache/range-source.js";
import type { Digest } from "../oci/digest.js";
import { contentRange, type RangePlan } from "./range.js";
import { API_VERSION_HEADER, type Reply, type ReplyHeaders } from "./reply.js";
import { cacheStatusHeaders, type CacheStatus } from "./request-context.js";

/** What is served for a digest: blob or manifest, its media type and, when known, its size. */
export interface Representation {
  kind: "blob" | "manifest";
  digest: Digest;
  mediaType: string;
  size: number | undefined;
}

/** The strong ETag registries give content by digest (distribution: the quoted digest). */
export function contentEtag(digest: Digest): string {
  return `"${digest.value}"`;
}

/**
 * The answer for content by digest, whole or one range (RFC 9110 section 14), as `plan` says
 * (range.ts; a "forward" plan is the caller's to carry out): headers, and the bytes `open` gives
 * once they are sent. Manifests are answered whole, without Accept-Ranges, as distribution does. Pure.
 */
export function contentReply(
  rep: Representation,
  cache: CacheStatus,
  plan: Exclude<RangePlan, { kind: "forward" }>,
  open: (start: number, end: number) => RangeSource | Readable,
  extraHeaders: ReplyHeaders = {},
): Reply {
  const headers: ReplyHeaders = {
    "content-type": rep.mediaType,
    "docker-content-digest": rep.digest.value,
    etag: contentEtag(rep.digest),
    ...API_VERSION_HEADER,
    ...cacheStatusHeaders(cache),
    ...extraHeaders,
  };
  const size = rep.size;
  if (size !== undefined && rep.kind === "blob") headers["accept-ranges"] = "bytes";
  let start = 0;
  let end = (size ?? Number.MAX_SAFE_INTEGER) - 1;
  let status = 200;
  if (plan.kind === "range" && rep.kind === "blob" && size !== undefined) {
    ({ start, end } = plan.range);
    status = 206;
    headers["content-range"] = contentRange(plan.range, size);
  }
  if (size !== undefined) headers["content-length"] = end - start + 1;
  return { status, headers, body: { kind: "range", start, end, open } };
}
