import type { IncomingMessage, ServerResponse } from "node:http";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { describe, expect, it } from "vitest";
import type { BlobStore } from "../../../src/cache/blob-store.js";
import { createLogger } from "../../../src/log/logger.js";
import type { Lifecycle } from "../../../src/proxy/lifecycle.js";
import { emptyAccessCounts } from "../../../src/registry/access-control.js";
import type { RegistryRequest } from "../../../src/registry/request-context.js";
import { Metrics } from "../../../src/stats/metrics.js";
import type { LeafMinter } from "../../../src/tls/leaf-minter.js";
import { UpstreamHealth } from "../../../src/upstream/health.js";

interface PromMetric {
  name: string;
  metrics: { value?: string; labels?: Record<string, string> }[];
}

const request = (host: string): RegistryRequest => ({ req: {} as IncomingMessage, res: {} as ServerResponse, host, port: 443, log: { host, method: "GET", path: "/v2/", kind: "ping", cache: "BYPASS" } });

describe("Metrics host labels", () => {
  it("go to the first hosts upstream answered, at most 50; the rest, and names that never answered, count as other", async () => {
    const health = new UpstreamHealth(1, 60_000, async () => false, createLogger("silent"));
    const metrics = new Metrics({
      health,
      store: { index: { size: 0, count: 0 }, maxBytes: 1, stats: { evictions: 0 }, disk: { writable: true }, inFlight: () => [] } as unknown as BlobStore,
      accessCounts: emptyAccessCounts(),
      minter: { minted: 0 } as LeafMinter,
      lifecycle: { activeRequests: 0, draining: false } as Lifecycle,
    });
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
});
