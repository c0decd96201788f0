import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { BlobStore } from "../cache/blob-store.js";
import type { Lifecycle } from "../proxy/lifecycle.js";
import type { AccessControl } from "../registry/access-control.js";
import { servedFromCache, type RegistryRequest } from "../registry/request-context.js";
import type { LeafMinter } from "../tls/leaf-minter.js";
import type { UpstreamHealth } from "../upstream/health.js";

/** Host labels are bounded: past this many distinct hosts, the rest count as "other". */
const MAX_HOST_LABELS = 50;

export interface MetricsSources {
  lifecycle: Lifecycle;
  store: BlobStore;
  health: UpstreamHealth;
  access: AccessControl;
  minter: LeafMinter;
}

/**
 * Prometheus metrics (prom-client), named per Prometheus conventions. Labels never
 * carry a digest, repository or client address, so cardinality stays bounded.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly hosts = new Set<string>();
  private readonly requests: Counter<"host" | "kind" | "cache">;
  private readonly servedBytes: Counter<"source">;
  private readonly upstreamRequests: Counter<"host" | "status">;
  private readonly upstreamErrors: Counter<"host" | "reason">;
  private readonly stale: Counter;
  private readonly coalesced: Counter;
  private readonly duration: Histogram<"kind" | "cache">;

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: "regcache_" });
    this.requests = new Counter({ name: "regcache_requests_total", help: "Intercepted registry requests by upstream host, kind and cache status", labelNames: ["host", "kind", "cache"], registers });
    this.servedBytes = new Counter({ name: "regcache_served_bytes_total", help: "Body bytes sent to clients, by where they came from", labelNames: ["source"], registers });
    this.upstreamRequests = new Counter({ name: "regcache_upstream_requests_total", help: "Requests regcache sent upstream, by host and status", labelNames: ["host", "status"], registers });
    this.upstreamErrors = new Counter({ name: "regcache_upstream_errors_total", help: "Upstream exchanges that failed without a response, by host and reason", labelNames: ["host", "reason"], registers });
    this.stale = new Counter({ name: "regcache_stale_responses_total", help: "Answers served stale because upstream was unavailable", registers });
    this.coalesced = new Counter({ name: "regcache_coalesced_requests_total", help: "Requests that joined a download already in progress", registers });
    this.duration = new Histogram({
      name: "regcache_request_duration_seconds",
      help: "Time to complete intercepted requests",
      labelNames: ["kind", "cache"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    });
    const { store, health, access, minter, lifecycle } = sources;
    new Gauge({ name: "regcache_active_requests", help: "Intercepted requests being answered now", registers, collect() { this.set(lifecycle.activeRequests); } });
    new Gauge({ name: "regcache_draining", help: "1 after SIGTERM, while readiness is off and in-flight requests finish", registers, collect() { this.set(lifecycle.draining ? 1 : 0); } });
    new Gauge({
      name: "regcache_upstream_up",
      help: "1 while an upstream host is considered reachable, 0 while its circuit is open",
      labelNames: ["host"],
      registers,
      collect() {
        this.reset();
        for (const h of health.snapshot()) this.set({ host: h.host }, h.state === "up" ? 1 : 0);
      },
    });
    new Gauge({ name: "regcache_inflight_downloads", help: "Upstream downloads in progress", registers, collect() { this.set(store.inFlight().length); } });
    new Gauge({ name: "regcache_cache_size_bytes", help: "Bytes held in the cache", registers, collect() { this.set(store.index.size); } });
    new Gauge({ name: "regcache_cache_max_bytes", help: "Configured cache bound (--max-cache-size)", registers, collect() { this.set(store.maxBytes); } });
    new Gauge({ name: "regcache_cache_entries", help: "Blobs and manifests held in the cache", registers, collect() { this.set(store.index.count); } });
    new Counter({ name: "regcache_cache_evictions_total", help: "Blobs evicted to stay under the bound", registers, collect() { this.reset(); this.inc(store.stats.evictions); } });
    new Counter({ name: "regcache_certificates_minted_total", help: "Leaf certificates minted", registers, collect() { this.reset(); this.inc(minter.minted); } });
    new Counter({
      name: "regcache_authorization_checks_total",
      help: "Access decisions on cached content, by result",
      labelNames: ["result"],
      registers,
      collect() {
        this.reset();
        for (const [result, n] of Object.entries(access.counts)) this.inc({ result }, n);
      },
    });
  }

  private hostLabel(host: string): string {
    if (this.hosts.has(host)) return host;
    if (this.hosts.size >= MAX_HOST_LABELS) return "other";
    this.hosts.add(host);
    return host;
  }

  observeRequest(rr: RegistryRequest, _status: number, bytes: number, durationMs: number): void {
    const cache = rr.log.cache ?? "BYPASS";
    const kind = rr.log.kind ?? "other";
    this.requests.inc({ host: this.hostLabel(rr.log.host), kind, cache });
    const source = servedFromCache(cache) ? "cache" : "upstream";
    if (bytes > 0) this.servedBytes.inc({ source }, bytes);
    if (cache === "STALE") this.stale.inc();
    if (cache === "COALESCED") this.coalesced.inc();
    this.duration.observe({ kind, cache }, durationMs / 1000);
  }

  observeUpstream(host: string, status: number | undefined, failure: string | undefined): void {
    const label = this.hostLabel(host);
    if (status !== undefined) this.upstreamRequests.inc({ host: label, status: String(status) });
    else this.upstreamErrors.inc({ host: label, reason: failure ?? "unknown" });
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }
}
