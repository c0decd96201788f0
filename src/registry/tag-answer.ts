import { isUnavailableStatus, type UpstreamFailure } from "../upstream/upstream-error.js";

/** What is known about a tag request so far; a fact is absent until it has been looked for. */
export interface TagFacts {
  method: string;
  /** A recorded answer younger than --tag-ttl whose manifest is cached and acceptable (never with a TTL of 0). */
  freshRecord: boolean;
  /** Upstream's answer to the tag HEAD, or why there is none; absent until asked. */
  upstream?: { status: number; digest: boolean; cached: boolean } | { failure: UpstreamFailure; rateLimited: boolean };
  /** A recorded answer (this Accept set, any Accept set, or a peer's) whose manifest is cached and acceptable; absent until looked for. */
  staleRecord?: boolean;
}

/**
 * The next step for a tag request:
 * - serve-recorded: a recorded answer, after the access check (HIT within the TTL, STALE offline);
 * - ask-upstream: which digest does the tag name now (a HEAD);
 * - find-recorded: upstream cannot answer; look for a recorded answer, here and at peers;
 * - unavailable: none is recorded: 429 while upstream rate-limits, 502 when it answered wrongly, else 503;
 * - upstream-answer: upstream's own answer (an auth challenge, 404, no digest): relayed as it is;
 * - serve-cached: upstream named a digest that is cached (revalidated);
 * - head-miss: a HEAD of a digest not cached: upstream's HEAD answer, and the tag recorded;
 * - fill: a GET of a digest not cached: fetched and stored as content by digest.
 */
export type TagStep =
  | { kind: "serve-recorded"; cache: "HIT" | "STALE" }
  | { kind: "ask-upstream" }
  | { kind: "find-recorded" }
  | { kind: "unavailable"; status: 429 | 502 | 503; code: "TOOMANYREQUESTS" | "UNAVAILABLE"; detail: "rate-limited" | "invalid" | "unavailable" }
  | { kind: "upstream-answer" }
  | { kind: "serve-cached" }
  | { kind: "head-miss" }
  | { kind: "fill" };

/** Decides a tag request's next step from the facts gathered so far. Pure, so every outcome is a table row. */
export function decideTagAnswer(facts: TagFacts): TagStep {
  if (facts.freshRecord) return { kind: "serve-recorded", cache: "HIT" };
  const upstream = facts.upstream;
  if (!upstream) return { kind: "ask-upstream" };
  const trouble = "failure" in upstream ? (upstream.rateLimited ? 429 : upstream.failure === "protocol" ? 502 : 503) : isUnavailableStatus(upstream.status) ? upstream.status : undefined;
  if (trouble !== undefined) {
    if (facts.staleRecord === undefined) return { kind: "find-recorded" };
    if (facts.staleRecord) return { kind: "serve-recorded", cache: "STALE" };
    if (trouble === 429) return { kind: "unavailable", status: 429, code: "TOOMANYREQUESTS", detail: "rate-limited" };
    if (trouble === 502) return { kind: "unavailable", status: 502, code: "UNAVAILABLE", detail: "invalid" };
    return { kind: "unavailable", status: 503, code: "UNAVAILABLE", detail: "unavailable" };
  }
  if (!("status" in upstream) || upstream.status !== 200 || !upstream.digest) return { kind: "upstream-answer" };
  if (upstream.cached) return { kind: "serve-cached" };
  return facts.method === "HEAD" ? { kind: "head-miss" } : { kind: "fill" };
}
