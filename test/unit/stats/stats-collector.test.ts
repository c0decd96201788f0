import type { IncomingMessage, ServerResponse } from "node:http";
import { describe, expect, it } from "vitest";
import type { CacheStatus, RegistryRequest, RequestLogFields } from "../../../src/registry/request-context.js";
import { StatsCollector } from "../../../src/stats/stats-collector.js";

function request(log: Partial<RequestLogFields>): RegistryRequest {
  return { req: {} as IncomingMessage, res: {} as ServerResponse, host: "r.test", port: 443, log: { host: "r.test", method: "GET", path: "/v2/", ...log } };
}

describe("StatsCollector: what one request counts as", () => {
  it.each<[string, RequestLogFields["kind"], CacheStatus | undefined, number, { hits: number; stale: number; misses: number; coalesced: number; fromCache: number }]>([
    ["a blob hit", "blob", "HIT", 200, { hits: 1, stale: 0, misses: 0, coalesced: 0, fromCache: 100 }],
    ["a ranged manifest hit", "manifest", "HIT", 206, { hits: 1, stale: 0, misses: 0, coalesced: 0, fromCache: 100 }],
    ["a tag answered stale", "tag", "STALE", 200, { hits: 1, stale: 1, misses: 0, coalesced: 0, fromCache: 100 }],
    ["a joined download", "blob", "COALESCED", 200, { hits: 1, stale: 0, misses: 0, coalesced: 1, fromCache: 100 }],
    ["a peer's copy", "blob", "PEER", 200, { hits: 1, stale: 0, misses: 0, coalesced: 0, fromCache: 100 }],
    ["a miss", "blob", "MISS", 200, { hits: 0, stale: 0, misses: 1, coalesced: 0, fromCache: 0 }],
    ["an error with a cache status (503 for an uncached tag)", "tag", "STALE", 503, { hits: 0, stale: 0, misses: 0, coalesced: 0, fromCache: 0 }],
    ["a refusal of cached content", "blob", "HIT", 401, { hits: 0, stale: 0, misses: 0, coalesced: 0, fromCache: 0 }],
    ["a bypass", "blob", "BYPASS", 200, { hits: 0, stale: 0, misses: 0, coalesced: 0, fromCache: 0 }],
  ])("%s", (_name, kind, cache, status, expected) => {
    const collector = new StatsCollector();
    collector.observe(request({ kind, cache }), status, 100, 1);
    const t = collector.totals;
    expect({ hits: t.hits, stale: t.stale, misses: t.misses, coalesced: t.coalesced, fromCache: t.bytesFromCache }).toEqual(expected);
    expect(t.contentRequests).toBe(1);
    expect(t.bytesFromCache + t.bytesFromUpstream).toBe(100);
  });

  it("counts pings and other paths as requests and bytes, never as content or hits", () => {
    const collector = new StatsCollector();
    collector.observe(request({ kind: "ping", cache: "STALE" }), 200, 2, 1);
    collector.observe(request({ kind: "other" }), 200, 50, 1);
    expect(collector.totals).toMatchObject({ requests: 2, contentRequests: 0, hits: 0, bytesServed: 52, bytesFromCache: 0, bytesFromUpstream: 0 });
  });

  it("counts an upstream error per host for a 5xx answer or an upstream never reached", () => {
    const collector = new StatsCollector();
    collector.observe(request({ kind: "blob", cache: "BYPASS" }), 502, 0, 1);
    collector.observe(request({ kind: "blob", cache: "BYPASS", upstreamStatus: 0 }), 403, 0, 1);
    collector.observe(request({ kind: "blob", cache: "MISS", upstreamStatus: 404 }), 404, 0, 1);
    expect(Object.fromEntries(collector.upstreamTotals())["r.test"]).toMatchObject({ requests: 3, errors: 2 });
  });

  it("ranks repositories by the bytes served for them, and buckets requests by minute", () => {
    let now = 10 * 60_000;
    const collector = new StatsCollector(() => now);
    collector.observe(request({ kind: "blob", cache: "HIT", repository: "small" }), 200, 10, 1);
    collector.observe(request({ kind: "blob", cache: "MISS", repository: "big" }), 200, 1_000, 1);
    now += 60_000;
    collector.observe(request({ kind: "blob", cache: "HIT", repository: "small" }), 200, 10, 1);
    expect(collector.topRepositories().map((r) => [r.repository, r.bytes])).toEqual([["r.test/big", 1_000], ["r.test/small", 20]]);
    const recent = collector.series().filter((b) => b.requests > 0);
    expect(recent.map((b) => [b.requests, b.hitRatio])).toEqual([[2, 0.5], [1, 1]]);
  });
});
