/**
 * Where a client may see regcache answer otherwise than the upstream registry: one line each,
 * with the reason. The differential suite (test/e2e/differential.test.ts) fails on any other
 * difference, and on a row the README's table does not repeat word for word
 * (test/unit/docs/allowed-differences.test.ts).
 */
export interface AllowedDifference {
  id: AllowedDifferenceId;
  line: string;
}

export type AllowedDifferenceId = "cache-headers" | "cdn-redirect" | "anonymous-public" | "unsafe-refused" | "declared-media-type";

export const ALLOWED_DIFFERENCES: readonly AllowedDifference[] = [
  {
    id: "cache-headers",
    line: "`X-Cache` and `Cache-Status` (RFC 9211) are added to every answer, and `Warning: 110` to a tag answer served stale while upstream is down: they say where the answer came from.",
  },
  {
    id: "cdn-redirect",
    line: "A blob `GET` that upstream redirects (to a CDN, as Docker Hub does) is answered with the bytes (`200`, or `206` for a range), with the registry headers a CDN's answer lacks (`Docker-Content-Digest`, `Docker-Distribution-Api-Version`): regcache follows the redirect itself so that it caches by digest; the bytes are those the client would fetch from the CDN.",
  },
  {
    id: "anonymous-public",
    line: "An anonymous request for content cached from a repository upstream serves to anyone (its anonymous token grants pull) is answered at once, where a token registry first answers `401` and the client fetches that token: the final answer is the same, a round trip sooner, and also while upstream is down.",
  },
  {
    id: "unsafe-refused",
    line: "A path with a dot segment, an encoded `.`, `/` or `\\`, a control character, or a repository name over 255 characters is refused with `400 NAME_INVALID` and the reason: forwarded, it could reach another resource upstream than the one regcache checks and caches.",
  },
  {
    id: "declared-media-type",
    line: "A manifest that declares its `mediaType` is served with that `Content-Type` wherever it is cached, even from a registry that labels it otherwise: clients check the two agree, and one registry's wrong label must not break pulls from another.",
  },
];

/** Headers regcache adds that upstream does not send (row "cache-headers"); any other added header is a difference. */
export const ADDED_HEADERS: readonly string[] = ["x-cache", "cache-status", "warning"];
