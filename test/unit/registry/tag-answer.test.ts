import { describe, expect, it } from "vitest";
import { decideTagAnswer, type TagFacts, type TagStep } from "../../../src/registry/tag-answer.js";

const GET = { method: "GET", freshRecord: false };
const answered = (status: number, digest = true, cached = false): TagFacts["upstream"] => ({ status, digest, cached });
const failed = (failure: "dns" | "connect" | "timeout" | "tls" | "protocol" | "circuit-open", rateLimited = false): TagFacts["upstream"] => ({ failure, rateLimited });
const unavailable = (status: 429 | 502 | 503): TagStep =>
  status === 429
    ? { kind: "unavailable", status, code: "TOOMANYREQUESTS", detail: "rate-limited" }
    : { kind: "unavailable", status, code: "UNAVAILABLE", detail: status === 502 ? "invalid" : "unavailable" };

describe("decideTagAnswer", () => {
  it.each<[string, TagFacts, TagStep]>([
    // Within the TTL: the recorded answer, upstream not asked.
    ["TTL: a fresh record", { ...GET, freshRecord: true }, { kind: "serve-recorded", cache: "HIT" }],
    ["TTL: none fresh, so upstream is asked", GET, { kind: "ask-upstream" }],
    // Revalidated: upstream named a digest.
    ["revalidated, digest cached", { ...GET, upstream: answered(200, true, true) }, { kind: "serve-cached" }],
    ["revalidated, HEAD of a digest not cached", { ...GET, method: "HEAD", upstream: answered(200) }, { kind: "head-miss" }],
    ["revalidated, GET of a digest not cached", { ...GET, upstream: answered(200) }, { kind: "fill" }],
    // Upstream's own answers.
    ["an auth challenge", { ...GET, upstream: answered(401, false) }, { kind: "upstream-answer" }],
    ["not found", { ...GET, upstream: answered(404, false) }, { kind: "upstream-answer" }],
    ["a 200 without a digest", { ...GET, upstream: answered(200, false) }, { kind: "upstream-answer" }],
    // Unavailable: look for a record first.
    ["unreachable, not yet looked for a record", { ...GET, upstream: failed("connect") }, { kind: "find-recorded" }],
    ["answering 503, not yet looked", { ...GET, upstream: answered(503, false) }, { kind: "find-recorded" }],
    ["stale: unreachable with a record", { ...GET, upstream: failed("timeout"), staleRecord: true }, { kind: "serve-recorded", cache: "STALE" }],
    ["stale: 500 with a record", { ...GET, upstream: answered(500, false), staleRecord: true }, { kind: "serve-recorded", cache: "STALE" }],
    ["stale: rate-limited with a record", { ...GET, upstream: answered(429, false), staleRecord: true }, { kind: "serve-recorded", cache: "STALE" }],
    ["unavailable: unreachable, nothing recorded", { ...GET, upstream: failed("dns"), staleRecord: false }, unavailable(503)],
    ["unavailable: TLS failure, nothing recorded", { ...GET, upstream: failed("tls"), staleRecord: false }, unavailable(503)],
    ["unavailable: circuit open, nothing recorded", { ...GET, upstream: failed("circuit-open"), staleRecord: false }, unavailable(503)],
    ["unavailable: answering 500, nothing recorded", { ...GET, upstream: answered(500, false), staleRecord: false }, unavailable(503)],
    ["unavailable: answering 504, nothing recorded", { ...GET, upstream: answered(504, false), staleRecord: false }, unavailable(503)],
    ["invalid: a wrong answer (redirect loop), nothing recorded", { ...GET, upstream: failed("protocol"), staleRecord: false }, unavailable(502)],
    ["invalid: answering 502, nothing recorded", { ...GET, upstream: answered(502, false), staleRecord: false }, unavailable(502)],
    ["rate-limited: answering 429, nothing recorded", { ...GET, upstream: answered(429, false), staleRecord: false }, unavailable(429)],
    ["rate-limited: circuit open on 429s, nothing recorded", { ...GET, upstream: failed("circuit-open", true), staleRecord: false }, unavailable(429)],
  ])("%s", (_name, facts, step) => {
    expect(decideTagAnswer(facts)).toEqual(step);
  });
});
