import type { IncomingMessage, ServerResponse } from "node:http";
import { describe, expect, it } from "vitest";
import type { BlobStore } from "../../../src/cache/blob-store.js";
import { createLogger } from "../../../src/log/logger.js";
import type { RegistryRequest, RequestLogFields } from "../../../src/registry/request-context.js";
import { StatsCollector } from "../../../src/stats/stats-collector.js";
import { statsSnapshot } from "../../../src/stats/stats-snapshot.js";
import { UpstreamHealth } from "../../../src/upstream/health.js";

function request(log: Partial<RequestLogFields> & { host: string }): RegistryRequest {
  return { req: {} as IncomingMessage, res: {} as ServerResponse, host: log.host, port: 443, log: { method: "GET", path: "/v2/", ...log } };
}

const store = { index: { size: 0, count: 0 }, maxBytes: 1, stats: { evictions: 0, evictedBytes: 0 }, disk: { writable: true }, inFlight: () => [] } as unknown as BlobStore;

describe("StatsCollector, bounded", () => {
  it("keeps rows for the most recently active hosts and repositories only, and totals for all", () => {
    const collector = new StatsCollector(Date.now, 10);
    collector.observe(request({ host: "big.test", repository: "team/app", kind: "blob", cache: "MISS" }), 200, 1_000_000, 5);
    for (let i = 0; i < 100; i++) collector.observe(request({ host: `h${i}.test`, repository: `r${i}`, kind: "blob", cache: "HIT" }), 200, 10, 1);
    const rows = [...collector.upstreamTotals()];
    expect(rows.map(([host]) => host)).toEqual(Array.from({ length: 10 }, (_, i) => `h${90 + i}.test`));
    expect(collector.topRepositories(100)).toHaveLength(10);
    expect(collector.topRepositories(1)[0]!.repository).toMatch(/^h9\d\.test\/r9\d$/);
    expect(collector.totals).toMatchObject({ requests: 101, contentRequests: 101, hits: 100, misses: 1, bytesServed: 1_001_000, bytesFromCache: 1_000, bytesFromUpstream: 1_000_000 });
  });
});

describe("statsSnapshot upstream list", () => {
  it("lists the most active hosts and those that are down, and counts the rest as omitted", () => {
    const collector = new StatsCollector();
    const health = new UpstreamHealth(1, 60_000, async () => false, createLogger("silent"));
    try {
      for (let i = 0; i < 500; i++) {
        const host = `h${i}.test`;
        collector.observe(request({ host, kind: "blob", cache: "MISS" }), 200, i, 1);
        if (i % 2 === 0) health.recordSuccess(host);
        else if (i < 400) health.recordFailure(host, "ECONNREFUSED");
      }
      const snapshot = statsSnapshot({ collector, store, health, version: "test", startedAt: performance.now(), proxyPort: () => 3128 });
      const listed = snapshot.upstreams;
      // The 25 with most bytes, then 100 of the 200 down hosts outside them.
      expect(listed.slice(0, 25).map((u) => u.host)).toEqual(Array.from({ length: 25 }, (_, i) => `h${499 - i}.test`));
      const downBeyondTop = listed.slice(25);
      expect(downBeyondTop).toHaveLength(100);
      expect(downBeyondTop.every((u) => u.state === "down" && u.lastError === "ECONNREFUSED")).toBe(true);
      expect(snapshot.upstreamsOmitted).toBe(500 - 125);
      expect(snapshot.totals.requests).toBe(500);
      expect(Buffer.byteLength(JSON.stringify(snapshot))).toBeLessThan(100 * 1024);
    } finally {
      health.stop();
    }
  });

  it("lists a host health knows and the collector has no row for", () => {
    const collector = new StatsCollector();
    const health = new UpstreamHealth(1, 60_000, async () => false, createLogger("silent"));
    try {
      health.recordFailure("down.test", "ENOTFOUND");
      const snapshot = statsSnapshot({ collector, store, health, version: "test", startedAt: performance.now(), proxyPort: () => 3128 });
      expect(snapshot.upstreams).toEqual([{ host: "down.test", requests: 0, hits: 0, stale: 0, bytes: 0, errors: 0, state: "down", since: expect.any(Number), consecutiveFailures: 1, lastError: "ENOTFOUND" }]);
      expect(snapshot.upstreamsOmitted).toBe(0);
    } finally {
      health.stop();
    }
  });
});
