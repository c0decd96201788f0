import type { BlobStore } from "../cache/blob-store.js";
import type { Cluster } from "../cluster/cluster.js";
import type { SharedTier } from "../fleet/shared-tier.js";
import type { HostHealth, UpstreamHealth } from "../upstream/health.js";
import type { StatsCollector, UpstreamTotals } from "./stats-collector.js";

export interface StatsSources {
  collector: StatsCollector;
  store: BlobStore;
  health: UpstreamHealth;
  version: string;
  /** performance.now() at start: uptime is a duration, which a wall-clock step must not bend. */
  startedAt: number;
  /** The proxy port, which nodes use (the page may be served on --admin-listen's). */
  proxyPort: () => number;
  cluster?: Cluster;
  shared?: SharedTier;
}

/** A disk that refused a download this recently still counts as full: the cache is degraded. */
const DISK_FULL_RECENT_MS = 10 * 60_000;

export type StatsSnapshot = ReturnType<typeof statsSnapshot>;

/**
 * Upstreams listed, most active first: a cluster pulls from a handful of registries, and
 * the stats page polls every 2 s, so the list stays short however many hosts were seen.
 */
const TOP_UPSTREAMS = 25;
/** Down and failing hosts are what an operator looks for: listed beyond the top ones, up to this many. */
const MAX_DOWN_LISTED = 100;

function ratio(part: number, whole: number): number | null {
  return whole > 0 ? part / whole : null;
}

/**
 * "failing": the host's last requests failed (connect, TLS, 5xx...) but fewer than
 * --failure-threshold in a row, so its circuit is still closed and clients still wait on it.
 */
export type UpstreamState = "up" | "failing" | "down";

interface UpstreamRow extends UpstreamTotals {
  host: string;
  state: UpstreamState;
  since: number | null;
  /** Failures in a row: what the circuit breaker counts towards --failure-threshold. */
  consecutiveFailures: number;
  lastError: string | null;
}

/** A host's state for people: "down" is the breaker's; "failing" comes before it. Pure. */
export function upstreamState(h: Pick<HostHealth, "state" | "consecutiveFailures"> | undefined): UpstreamState {
  if (!h) return "up";
  if (h.state === "down") return "down";
  return h.consecutiveFailures > 0 ? "failing" : "up";
}

/** The listed upstream rows, and how many known hosts were left out of the list. */
function upstreamRows(s: StatsSources): { upstreams: UpstreamRow[]; upstreamsOmitted: number } {
  const health = new Map(s.health.snapshot().map((h) => [h.host, h]));
  const row = (host: string, totals: UpstreamTotals, h: HostHealth | undefined): UpstreamRow => ({
    host,
    ...totals,
    state: upstreamState(h),
    since: h?.since ?? null,
    consecutiveFailures: h?.consecutiveFailures ?? 0,
    lastError: h?.lastError ?? null,
  });
  const rows: UpstreamRow[] = [];
  for (const [host, totals] of s.collector.upstreamTotals()) {
    rows.push(row(host, totals, health.get(host)));
    health.delete(host);
  }
  for (const h of health.values()) rows.push(row(h.host, { requests: 0, hits: 0, stale: 0, bytes: 0, errors: 0 }, h));
  rows.sort((a, b) => b.bytes - a.bytes || b.requests - a.requests || (b.since ?? 0) - (a.since ?? 0));
  let downListed = 0;
  const upstreams = rows.filter((r, i) => i < TOP_UPSTREAMS || (r.state !== "up" && downListed++ < MAX_DOWN_LISTED));
  return { upstreams, upstreamsOmitted: rows.length - upstreams.length };
}

/** The JSON behind /api/stats, the stats page and `regcache stats`. */
export function statsSnapshot(s: StatsSources) {
  const t = s.collector.totals;
  const { upstreams, upstreamsOmitted } = upstreamRows(s);
  return {
    version: s.version,
    proxyPort: s.proxyPort(),
    uptimeSeconds: Math.round((performance.now() - s.startedAt) / 1000),
    totals: {
      ...t,
      hitRatio: ratio(t.hits, t.contentRequests),
      byteHitRatio: ratio(t.bytesFromCache, t.bytesFromCache + t.bytesFromUpstream),
      bytesSaved: t.bytesFromCache,
    },
    cache: {
      bytes: s.store.index.size,
      entries: s.store.index.count,
      maxBytes: s.store.maxBytes,
      evictions: s.store.stats.evictions,
      evictedBytes: s.store.stats.evictedBytes,
      /** Why the index cannot record durably (disk full, in memory for this run); null while it can. */
      indexWriteError: s.store.index.writeError?.message ?? null,
      /** The disk had no room for a download lately: bodies stream through uncached meanwhile. */
      diskFull: s.store.stats.noSpaceAt !== undefined && Date.now() - s.store.stats.noSpaceAt < DISK_FULL_RECENT_MS,
      uncachedForSpace: s.store.stats.uncachedForSpace,
      /** Why the data disk cannot be written (read-only, failing), and since when; null while it can. */
      diskFault: s.store.disk.fault ? { ...s.store.disk.fault } : null,
      uncachedForDiskFault: s.store.stats.uncachedForDiskFault,
      damagedFiles: s.store.stats.damaged,
      /** Downloads whose bytes did not match their digest: nothing cached, their readers cut (log field cut: "digest-mismatch"). */
      digestMismatches: s.store.stats.digestMismatches,
      missingFiles: s.store.stats.missing,
    },
    peers: s.cluster ? { self: s.cluster.self, members: s.cluster.membership.snapshot(), ...s.cluster.stats } : null,
    shared: s.shared ? { ...s.shared.health, degraded: s.shared.degraded, ...s.shared.stats, uploads: { ...s.shared.stats.uploads } } : null,
    upstreams,
    upstreamsOmitted,
    inFlight: s.store.inFlight().map((d) => ({ digest: d.digest.value, host: d.host, repository: s.store.filledFor(d.digest) ?? null, bytes: d.written, size: d.expectedSize ?? null })),
    topRepositories: s.collector.topRepositories(),
    notIntercepted: s.collector.topConnects(),
    recentRequests: s.collector.recentRequests(),
    series: s.collector.series(),
  };
}
