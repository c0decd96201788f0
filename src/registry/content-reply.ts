import type { Readable } from "node:stream";
import type { RangeSource } from "../cache/range-source.js";
import type { Digest } from "../oci/digest.js";
import { contentRange, parseRange } from "./range.js";
import { API_VERSION_HEADER, errorReply, type Reply, type ReplyHeaders } from "./reply.js";
import { cacheStatusHeaders, type CacheStatus } from "./request-context.js";

/** What is served for a digest: its media type and, when known, its size. */
export interface Representation {
  digest: Digest;
  mediaType: string;
  size: number | undefined;
}

/**
 * The answer for content by digest, whole or ranged (RFC 9110 section 14): headers, and the
 * bytes `open` gives once they are sent. Without a known size, or with `wholeOnly` (a body
 * streamed through), ranges cannot be answered and the whole body is sent. Pure.
 */
export function contentReply(
  rep: Representation,
  cache: CacheStatus,
  rangeHeader: string | undefined,
  open: (start: number, end: number) => RangeSource | Readable,
  options: { extraHeaders?: ReplyHeaders; wholeOnly?: boolean } = {},
): Reply {
  const headers: ReplyHeaders = {
    "content-type": rep.mediaType,
    "docker-content-digest": rep.digest.value,
    etag: `"${rep.digest.value}"`,
    ...API_VERSION_HEADER,
    ...cacheStatusHeaders(cache),
    ...options.extraHeaders,
  };
  const size = rep.size;
  if (size !== undefined) headers["accept-ranges"] = "bytes";
  const range = size === undefined || options.wholeOnly ? { kind: "none" as const } : parseRange(rangeHeader, size);
  if (range.kind === "unsatisfiable") return errorReply(416, "RANGE_INVALID", `requested range not satisfiable for ${size} bytes`, { "content-range": `bytes */${size}` });
  let start = 0;
  let end = (size ?? Number.MAX_SAFE_INTEGER) - 1;
  let status = 200;
  if (range.kind === "range") {
    ({ start, end } = range.range);
    status = 206;
    headers["content-range"] = contentRange(range.range, size!);
  }
  if (size !== undefined) headers["content-length"] = end - start + 1;
  return { status, headers, body: { kind: "range", start, end, open } };
}
