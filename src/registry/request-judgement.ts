import type { IncomingHttpHeaders } from "node:http";
import type { Digest } from "../oci/digest.js";
import type { NotFromCache } from "./cached-answer.js";
import { MAX_NAME_LENGTH } from "../oci/names.js";
import { headerValue } from "../upstream/headers.js";
import { isSingleByteRange } from "./range.js";
import { parseRegistryPath } from "./routes.js";

/**
 * Why a request goes to the upstream as it is, its answer relayed and nothing cached: regcache
 * cannot answer it from its cache exactly as the registry would.
 */
export type ForwardReason =
  /** Not a blob, manifest or tag read: uploads, deletes, catalog, tag lists, referrers, other paths. */
  | "not-a-read"
  /** A GET or HEAD with a body, or a query: not the plain read the cache answers. */
  | "body-or-query"
  /** A name, digest (an algorithm regcache cannot verify, say sha384) or tag outside the grammar. */
  | "unkeyable-name"
  | "unkeyable-digest"
  | "unkeyable-tag"
  /** If-None-Match, If-Match, If-Modified-Since, If-Unmodified-Since: registries evaluate them differently. */
  | "conditional"
  /** Several ranges, another unit, an invalid or unsatisfiable range, or a Range on a manifest. */
  | "range"
  /** Found in the cache, but not answerable from it as the registry would (cached-answer.ts). */
  | NotFromCache;

export type Judgement =
  /** Unsafe to forward: refused with 400 NAME_INVALID and this reason. */
  | { kind: "refuse"; reason: string }
  | { kind: "forward"; reason: ForwardReason }
  | { kind: "ping" }
  | { kind: "blob" | "manifest"; name: string; digest: Digest }
  | { kind: "tag"; name: string; tag: string };

const CONDITIONALS = ["if-none-match", "if-match", "if-modified-since", "if-unmodified-since"];

/**
 * Why a request path is unsafe to forward, or undefined. Paths that normalize differently on
 * different servers (dot segments, encoded dots, slashes or backslashes) could reach another
 * resource upstream than the one regcache checked and cached; control characters could reach
 * upstream's logs or parsers as something else. Only the path: a query is the upstream's to read. Pure.
 */
export function unsafePathReason(url: string): string | undefined {
  const path = url.split("?")[0]!;
  if (/[\0-\x1f\x7f]|%[01][0-9a-f]|%7f/i.test(path)) return "the request path has a control character, raw or percent-encoded";
  if (/(^|\/)\.{1,2}(\/|$)/.test(path)) return "the request path has a dot segment (. or ..)";
  if (/%2e/i.test(path)) return "the request path has an encoded dot (%2e)";
  if (/%2f/i.test(path)) return "the request path has an encoded slash (%2f)";
  if (/%5c|\\/i.test(path)) return "the request path has a backslash, raw or encoded (%5c)";
  return undefined;
}

/** RFC 9112 section 6.1/6.2: a request has a body exactly when it is framed with a length or chunked. */
export function hasRequestBody(headers: IncomingHttpHeaders): boolean {
  return (headers["content-length"] !== undefined && headers["content-length"] !== "0") || headers["transfer-encoding"] !== undefined;
}

/**
 * What regcache does with a request inside an intercepted tunnel: refuse it (only what is unsafe
 * to forward), forward it (whatever it cannot judge), or answer it as the ping, content by
 * digest or a tag. Pure: the request line and headers alone decide.
 */
export function judgeRequest(method: string, url: string, headers: IncomingHttpHeaders): Judgement {
  const unsafe = unsafePathReason(url);
  if (unsafe) return { kind: "refuse", reason: unsafe };
  const queryAt = url.indexOf("?");
  const route = parseRegistryPath(queryAt < 0 ? url : url.slice(0, queryAt));
  if (route.kind === "unkeyable" && route.part === "name" && route.name.length > MAX_NAME_LENGTH) {
    return { kind: "refuse", reason: `the repository name is ${route.name.length} characters long, over the ${MAX_NAME_LENGTH} the distribution spec allows` };
  }
  if (route.kind === "other") return { kind: "forward", reason: "not-a-read" };
  if (route.kind === "unkeyable") return { kind: "forward", reason: `unkeyable-${route.part}` };
  if ((method !== "GET" && method !== "HEAD") || hasRequestBody(headers)) return { kind: "forward", reason: route.kind === "ping" ? "not-a-read" : "body-or-query" };
  if (route.kind === "ping") return route;
  if (queryAt >= 0) return { kind: "forward", reason: "body-or-query" };
  if (CONDITIONALS.some((name) => headers[name] !== undefined)) return { kind: "forward", reason: "conditional" };
  const range = headerValue(headers.range);
  if (range !== undefined && (route.kind !== "blob" || !isSingleByteRange(range))) return { kind: "forward", reason: "range" };
  return route;
}
