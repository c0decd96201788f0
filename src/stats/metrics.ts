import { statfs } from "node:fs/promises";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { BlobStore } from "../cache/blob-store.js";
import type { Cluster } from "../cluster/cluster.js";
import type { SharedTier } from "../fleet/shared-tier.js";
import type { Lifecycle } from "../proxy/lifecycle.js";
import type { AccessCounts } from "../registry/access-control.js";
import { servedFromCache, type RegistryRequest } from "../registry/request-context.js";
import type { LeafMinter } from "../tls/leaf-minter.js";
import type { UpstreamHealth } from "../upstream/health.js";
import { parseAuthority } from "../upstream/client.js";
import type { MetricHostLabels } from "./metric-host-labels.js";
import { countedAs } from "./stats-collector.js";

export interface MetricsSources {
  lifecycle: Lifecycle;
  store: BlobStore;
  health: UpstreamHealth;
  accessCounts: AccessCounts;
  minter: LeafMinter;
  /** Which hosts have a label of their own (metric-host-labels.ts). */
  hostLabels: MetricHostLabels;
  /** The data dir, whose filesystem's size and free space are reported. */
  dataDir: string;
  cluster?: Cluster;
  shared?: SharedTier;
}

/**
 * Prometheus metrics (prom-client), named per Prometheus conventions. Labels never
 * carry a digest, repository or client address, so cardinality stays bounded.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly hostLabels: MetricHostLabels;
  private readonly requests: Counter<"host" | "kind" | "cache">;
  private readonly servedBytes: Counter<"source">;
  private readonly upstreamRequests: Counter<"host" | "status">;
  private readonly upstreamErrors: Counter<"host" | "reason">;
  private readonly stale: Counter<"host">;
  private readonly fillFailures: Counter<"host">;
  private readonly coalesced: Counter;
  private readonly cut: Counter<"reason">;
  private readonly duration: Histogram<"kind" | "cache">;

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    this.hostLabels = sources.hostLabels;
    collectDefaultMetrics({ register: this.registry, prefix: "regcache_" });
    this.requests = new Counter({ name: "regcache_requests_total", help: "Intercepted registry requests by upstream host, kind and cache status", labelNames: ["host", "kind", "cache"], registers });
    this.servedBytes = new Counter({ name: "regcache_served_bytes_total", help: "Body bytes sent to clients, by where they came from", labelNames: ["source"], registers });
    this.upstreamRequests = new Counter({ name: "regcache_upstream_requests_total", help: "Requests regcache sent upstream, by host and status", labelNames: ["host", "status"], registers });
    this.upstreamErrors = new Counter({ name: "regcache_upstream_errors_total", help: "Upstream exchanges that failed without a response, by host and reason", labelNames: ["host", "reason"], registers });
    this.stale = new Counter({ name: "regcache_stale_responses_total", help: "Tag answers served from the cache because upstream was unavailable, by host (the stale count of /api/stats)", labelNames: ["host"], registers });
    this.fillFailures = new Counter({
      name: "regcache_fill_failures_total",
      help: "Blob, manifest and tag requests the cache could neither answer nor fill: answered 5xx (upstream unreachable or failing, the cache disk failing), by host",
      labelNames: ["host"],
      registers,
    });
    this.coalesced = new Counter({ name: "regcache_coalesced_requests_total", help: "Requests that joined a download already in progress", registers });
    this.cut = new Counter({ name: "regcache_responses_cut_total", help: "Responses regcache cut short, by reason (digest-mismatch: the bytes did not match their digest)", labelNames: ["reason"], registers });
    this.duration = new Histogram({
      name: "regcache_request_duration_seconds",
      help: "Time to complete intercepted requests",
      labelNames: ["kind", "cache"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    });
    const { store, health, accessCounts, minter, lifecycle } = sources;
    new Gauge({ name: "regcache_active_requests", help: "Intercepted requests being answered now", registers, collect() { this.set(lifecycle.activeRequests); } });
    new Gauge({ name: "regcache_draining", help: "1 after SIGTERM, while readiness is off and in-flight requests finish", registers, collect() { this.set(lifecycle.draining ? 1 : 0); } });
    const hostLabel = (host: string): string => this.hostLabel(host);
    new Gauge({
      name: "regcache_upstream_up",
      help: 'Per upstream host, 1 while it is considered reachable, 0 while its circuit is open; host="other", every host without its own label, is 0 while any of them is down',
      labelNames: ["host"],
      registers,
      collect() {
        this.reset();
        const up = new Map<string, number>();
        for (const h of health.snapshot()) {
          const label = hostLabel(parseAuthority(h.host).host);
          up.set(label, Math.min(up.get(label) ?? 1, h.state === "up" ? 1 : 0));
        }
        for (const [host, value] of up) this.set({ host }, value);
      },
    });
    new Gauge({ name: "regcache_inflight_downloads", help: "Upstream downloads in progress", registers, collect() { this.set(store.inFlight().length); } });
    new Gauge({ name: "regcache_cache_size_bytes", help: "Bytes held in the cache", registers, collect() { this.set(store.index.size); } });
    new Gauge({ name: "regcache_cache_max_bytes", help: "Configured cache bound (--max-cache-size)", registers, collect() { this.set(store.maxBytes); } });
    new Gauge({ name: "regcache_cache_entries", help: "Blobs and manifests held in the cache", registers, collect() { this.set(store.index.count); } });
    const disk = async (): Promise<{ size: number; free: number } | undefined> => {
      try {
        const s = await statfs(sources.dataDir);
        return { size: s.blocks * s.bsize, free: s.bavail * s.bsize };
      } catch {
        return undefined;
      }
    };
    new Gauge({ name: "regcache_disk_size_bytes", help: "Size of the filesystem that holds the data dir", registers, async collect() { const d = await disk(); if (d) this.set(d.size); } });
    new Gauge({ name: "regcache_disk_free_bytes", help: "Bytes regcache may still write on the filesystem that holds the data dir", registers, async collect() { const d = await disk(); if (d) this.set(d.free); } });
    new Gauge({ name: "regcache_index_write_failing", help: "1 while the cache index cannot record durably (its last write failed, or it is in memory for this run)", registers, collect() { this.set(store.index.writeFailing ? 1 : 0); } });
    new Counter({ name: "regcache_cache_evictions_total", help: "Blobs evicted to stay under the bound", registers, collect() { this.reset(); this.inc(store.stats.evictions); } });
    new Counter({ name: "regcache_certificates_minted_total", help: "Leaf certificates minted", registers, collect() { this.reset(); this.inc(minter.minted); } });
    const count = (name: string, help: string, value: () => number): void =>
      void new Counter({ name, help, registers, collect() { this.reset(); this.inc(value()); } });
    count("regcache_cache_damaged_files_total", "Cached files found not to match their digest (quarantined and refetched)", () => store.stats.damaged);
    count("regcache_digest_mismatches_total", "Downloads (from upstream, a peer or the object store) whose bytes did not match their digest: nothing cached, readers cut", () => store.stats.digestMismatches);
    count("regcache_cache_missing_files_total", "Index rows whose file was gone or resized (dropped: a miss)", () => store.stats.missing);
    count("regcache_cache_uncached_no_space_total", "Bodies streamed through uncached because the disk had no room", () => store.stats.uncachedForSpace);
    count("regcache_cache_uncached_disk_fault_total", "Bodies streamed through uncached because the data disk could not be written", () => store.stats.uncachedForDiskFault);
    new Gauge({ name: "regcache_cache_disk_writable", help: "0 while the data disk cannot be written (read-only or failing): cached content is served, misses stream through uncached", registers, collect() { this.set(store.disk.writable ? 1 : 0); } });
    const cluster = sources.cluster;
    if (cluster) {
      new Gauge({ name: "regcache_peers_live", help: "Other replicas answering on the peer channel", registers, collect() { this.set(cluster.membership.live().length); } });
      count("regcache_peer_fills_total", "Content the owner replica served or filled for this one", () => cluster.stats.peerFills);
      count("regcache_peer_copies_total", "Content copied from a peer that held it: replication, or what upstream or the object store could not serve", () => cluster.stats.peerCopies);
      count("regcache_peer_tag_answers_total", "Tag answers learnt from a peer while upstream could not be reached", () => cluster.stats.peerTags);
      count("regcache_peer_replications_total", "Copies this replica asked a peer to keep", () => cluster.stats.replications);
      count("regcache_peer_tag_replications_total", "Tag answers this replica recorded and sent to the peer that keeps their second copy", () => cluster.stats.tagReplications);
      new Counter({
        name: "regcache_peer_errors_total",
        help: "Requests to peers that failed, by reason",
        labelNames: ["reason"],
        registers,
        collect() {
          this.reset();
          for (const [reason, n] of Object.entries(cluster.stats.peerErrors)) this.inc({ reason }, n);
        },
      });
      new Counter({
        name: "regcache_peer_refused_connections_total",
        help: "Connections the peer port refused, by cause (no-certificate, other-ca, unverified-certificate, not-a-peer, handshake)",
        labelNames: ["cause"],
        registers,
        collect() {
          this.reset();
          for (const [cause, n] of Object.entries(cluster.stats.refusedConnections)) this.inc({ cause }, n);
        },
      });
    }
    const shared = sources.shared;
    if (shared) {
      new Gauge({
        name: "regcache_shared_tier_up",
        help: "1 while a configured part of the fleet's shared tier (object_store, index) answers",
        labelNames: ["part"],
        registers,
        collect() {
          const { objectStore, index } = shared.health;
          if (objectStore !== "off") this.set({ part: "object_store" }, objectStore === "up" ? 1 : 0);
          if (index !== "off") this.set({ part: "index" }, index === "up" ? 1 : 0);
        },
      });
      count("regcache_shared_object_fills_total", "Contents read from the object store into this replica's disk", () => shared.stats.objectFills);
      count("regcache_shared_holder_fills_total", "Contents streamed from the replica holding the fleet's lease on them", () => shared.stats.holderFills);
      count("regcache_shared_duplicate_fetches_total", "Upstream fetches made without the fleet's lease (index down, holder unreachable, lease lost)", () => shared.stats.duplicateFetches);
      count("regcache_shared_uploads_total", "Contents uploaded to the object store", () => shared.stats.uploads.uploaded);
      count("regcache_shared_upload_failures_total", "Upload attempts that failed (retried later)", () => shared.stats.uploads.failures);
      new Gauge({ name: "regcache_shared_uploads_queued", help: "Uploads waiting for their turn or a retry", registers, collect() { this.set(shared.stats.uploads.queued); } });
      count("regcache_shared_evictions_total", "Objects this replica evicted from the object store as the fleet's evictor", () => shared.stats.evictions);
      count("regcache_shared_reindexed_objects_total", "Objects this replica found in the object store without an index row and gave one", () => shared.stats.reindexed);
      count("regcache_shared_damaged_objects_total", "Objects read from the store that did not match their digest (deleted)", () => shared.stats.damaged);
    }
    new Counter({
      name: "regcache_authorization_checks_total",
      help: "Access decisions on cached content, by result",
      labelNames: ["result"],
      registers,
      collect() {
        this.reset();
        for (const [result, n] of Object.entries(accessCounts)) this.inc({ result }, n);
      },
    });
  }

  private hostLabel(host: string): string {
    return this.hostLabels.label(host);
  }

  observeRequest(rr: RegistryRequest, status: number, bytes: number, durationMs: number): void {
    const cache = rr.log.cache ?? "BYPASS";
    const kind = rr.log.kind ?? "other";
    const host = this.hostLabel(rr.log.host);
    this.requests.inc({ host, kind, cache });
    const source = servedFromCache(cache) ? "cache" : "upstream";
    if (bytes > 0) this.servedBytes.inc({ source }, bytes);
    const counts = countedAs(rr, status);
    if (counts.stale) this.stale.inc({ host });
    if (counts.coalesced) this.coalesced.inc();
    if (counts.content && !counts.hit && status >= 500) this.fillFailures.inc({ host });
    if (rr.log.cut) this.cut.inc({ reason: rr.log.cut });
    this.duration.observe({ kind, cache }, durationMs / 1000);
  }

  observeUpstream(host: string, status: number | undefined, failure: string | undefined): void {
    if (status !== undefined) this.hostLabels.answered(host);
    const label = this.hostLabel(host);
    if (status !== undefined) this.upstreamRequests.inc({ host: label, status: String(status) });
    else this.upstreamErrors.inc({ host: label, reason: failure ?? "unknown" });
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }
}
