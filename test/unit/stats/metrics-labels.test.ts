import { mkdtempSync, rmSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { afterAll, describe, expect, it } from "vitest";
import type { BlobStore } from "../../../src/cache/blob-store.js";
import { createLogger } from "../../../src/log/logger.js";
import type { Lifecycle } from "../../../src/proxy/lifecycle.js";
import { emptyAccessCounts } from "../../../src/registry/access-control.js";
import type { RegistryRequest } from "../../../src/registry/request-context.js";
import { MetricHostLabels } from "../../../src/stats/metric-host-labels.js";
import { Metrics } from "../../../src/stats/metrics.js";
import { StatsCollector } from "../../../src/stats/stats-collector.js";
import { upstreamState } from "../../../src/stats/stats-snapshot.js";
import type { LeafMinter } from "../../../src/tls/leaf-minter.js";
import { UpstreamHealth } from "../../../src/upstream/health.js";

interface PromMetric {
  name: string;
  metrics: { value?: string; labels?: Record<string, string> }[];
}

const request = (host: string): RegistryRequest => ({ req: {} as IncomingMessage, res: {} as ServerResponse, host, port: 443, log: { host, method: "GET", path: "/v2/", kind: "ping", cache: "BYPASS" } });

const dir = mkdtempSync(path.join(tmpdir(), "metrics-labels-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Metrics over fakes: the tests feed them requests and upstream answers, and read the text they expose. */
function metricsOver(health: UpstreamHealth, hostLabels: MetricHostLabels): Metrics {
  return new Metrics({
    health,
    store: { index: { size: 0, count: 0 }, maxBytes: 1, stats: { evictions: 0 }, disk: { writable: true }, inFlight: () => [] } as unknown as BlobStore,
    accessCounts: emptyAccessCounts(),
    minter: { minted: 0 } as LeafMinter,
    lifecycle: { activeRequests: 0, draining: false } as Lifecycle,
    hostLabels,
    dataDir: dir,
  });
}

describe("Metrics host labels", () => {
  it("go to the first hosts upstream answered, at most 50; the rest, and names that never answered, count as other", async () => {
    const health = new UpstreamHealth(1, 60_000, async () => false, createLogger("silent"));
    const metrics = metricsOver(health, new MetricHostLabels(path.join(dir, "metric-hosts.json"), [], createLogger("silent")));
    try {
      for (let i = 0; i < 100; i++) {
        const junk = `typo${i}.test`;
        metrics.observeUpstream(junk, undefined, "dns");
        health.recordFailure(junk, "ENOTFOUND");
        metrics.observeRequest(request(junk), 200, 0, 1);
      }
      for (let i = 0; i < 60; i++) {
        const host = `registry${i}.test`;
        metrics.observeUpstream(host, 200, undefined);
        health.recordSuccess(host);
        metrics.observeRequest(request(host), 200, 0, 1);
      }
      const parsed = parsePrometheusTextFormat(await metrics.text()) as PromMetric[];
      const series = (name: string) => parsed.find((m) => m.name === name)!.metrics;
      const hostsOf = (name: string) => new Set(series(name).map((m) => m.labels!.host));
      const labelled = Array.from({ length: 50 }, (_, i) => `registry${i}.test`);
      expect(hostsOf("regcache_requests_total")).toEqual(new Set([...labelled, "other"]));
      expect(series("regcache_requests_total").find((m) => m.labels!.host === "other")!.value).toBe(String(100 + 10));
      expect(hostsOf("regcache_upstream_errors_total")).toEqual(new Set(["other"]));
      expect(hostsOf("regcache_upstream_up")).toEqual(new Set([...labelled, "other"]));
      expect(series("regcache_upstream_up").find((m) => m.labels!.host === "other")!.value).toBe("0");
      expect(series("regcache_upstream_up").find((m) => m.labels!.host === "registry0.test")!.value).toBe("1");
    } finally {
      health.stop();
    }
  });

  it("stale answers: /metrics counts per host exactly what /api/stats counts, pings and errors included in neither", async () => {
    const health = new UpstreamHealth(1, 60_000, async () => false, createLogger("silent"));
    const labels = new MetricHostLabels(path.join(dir, "stale.json"), ["quay.test"], createLogger("silent"));
    const metrics = metricsOver(health, labels);
    const collector = new StatsCollector();
    const seen = (host: string, kind: "tag" | "ping" | "blob", cache: "STALE" | "HIT", status: number): void => {
      const rr: RegistryRequest = { req: {} as IncomingMessage, res: {} as ServerResponse, host, port: 443, log: { host, method: "GET", path: "/v2/", kind, cache } };
      collector.observe(rr, status, 10, 1);
      metrics.observeRequest(rr, status, 10, 1);
    };
    try {
      seen("quay.test", "tag", "STALE", 200);
      seen("quay.test", "tag", "STALE", 200);
      seen("quay.test", "tag", "STALE", 401);
      seen("quay.test", "ping", "STALE", 200);
      seen("ghcr.test", "tag", "STALE", 200);
      seen("quay.test", "blob", "HIT", 200);
      const parsed = parsePrometheusTextFormat(await metrics.text()) as PromMetric[];
      const series = parsed.find((m) => m.name === "regcache_stale_responses_total")!.metrics;
      const byHost = Object.fromEntries(series.map((m) => [m.labels!.host, Number(m.value)]));
      expect(byHost).toEqual({ "quay.test": 2, other: 1 });
      expect(collector.totals.stale).toBe(3);
      expect(Object.fromEntries([...collector.upstreamTotals()].map(([host, t]) => [host, t.stale]))).toEqual({ "quay.test": 2, "ghcr.test": 1 });
      // The data dir's filesystem, as statfs sees it.
      const value = (name: string) => Number(parsed.find((m) => m.name === name)!.metrics[0]!.value);
      expect(value("regcache_disk_size_bytes")).toBeGreaterThan(value("regcache_disk_free_bytes"));
      expect(value("regcache_disk_free_bytes")).toBeGreaterThan(0);
    } finally {
      health.stop();
    }
  });

  it("fill failures: content the cache could neither answer nor fill (5xx), by host; a refusal or a stale answer is none", async () => {
    const health = new UpstreamHealth(1, 60_000, async () => false, createLogger("silent"));
    const metrics = metricsOver(health, new MetricHostLabels(path.join(dir, "fills.json"), ["quay.test"], createLogger("silent")));
    const seen = (kind: "blob" | "tag" | "ping", cache: "MISS" | "STALE" | "BYPASS", status: number): void =>
      metrics.observeRequest({ req: {} as IncomingMessage, res: {} as ServerResponse, host: "quay.test", port: 443, log: { host: "quay.test", method: "GET", path: "/v2/", kind, cache } }, status, 0, 1);
    try {
      seen("blob", "MISS", 502);
      seen("tag", "MISS", 503);
      seen("blob", "MISS", 401);
      seen("tag", "STALE", 200);
      seen("ping", "BYPASS", 502);
      const fills = (parsePrometheusTextFormat(await metrics.text()) as PromMetric[]).find((m) => m.name === "regcache_fill_failures_total")!.metrics;
      expect(fills.map((m) => [m.labels!.host, m.value])).toEqual([["quay.test", "2"]]);
    } finally {
      health.stop();
    }
  });

  it("a host whose last requests failed is failing before its circuit opens, and up again after one success", () => {
    const health = new UpstreamHealth(3, 60_000, async () => false, createLogger("silent"));
    const state = (): string => upstreamState(health.snapshot().find((h) => h.host === "quay.test"));
    try {
      health.recordSuccess("quay.test");
      expect(state()).toBe("up");
      health.recordFailure("quay.test", "connection failed (ECONNREFUSED)");
      expect(state()).toBe("failing");
      health.recordFailure("quay.test", "HTTP 503", 503);
      expect(state()).toBe("failing");
      health.recordFailure("quay.test", "TLS verification failed");
      expect(state()).toBe("down");
      health.recordSuccess("quay.test");
      expect(state()).toBe("up");
      expect(upstreamState(undefined)).toBe("up");
    } finally {
      health.stop();
    }
  });
});
