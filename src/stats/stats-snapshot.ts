import type { BlobStore } from "../cache/blob-store.js";
import type { UpstreamHealth } from "../upstream/health.js";
import type { StatsCollector } from "./stats-collector.js";

export interface StatsSources {
  collector: StatsCollector;
  store: BlobStore;
  health: UpstreamHealth;
  version: string;
  startedAt: number;
}

export type StatsSnapshot = ReturnType<typeof statsSnapshot>;

function ratio(part: number, whole: number): number | null {
  return whole > 0 ? part / whole : null;
}

/** The JSON behind /api/stats, the stats page and `regcache stats`. */
export function statsSnapshot(s: StatsSources) {
  const t = s.collector.totals;
  const health = new Map(s.health.snapshot().map((h) => [h.host, h]));
  const upstreams = [...s.collector.upstreamTotals().entries()]
    .map(([host, totals]) => {
      const h = health.get(host);
      return { host, ...totals, state: h?.state ?? "up", since: h?.since ?? null, lastError: h?.lastError ?? null };
    })
    .sort((a, b) => b.bytes - a.bytes);
  for (const [host, h] of health) {
    if (!upstreams.some((u) => u.host === host)) upstreams.push({ host, requests: 0, hits: 0, bytes: 0, errors: 0, state: h.state, since: h.since, lastError: h.lastError ?? null });
  }
  return {
    version: s.version,
    uptimeSeconds: Math.round((Date.now() - s.startedAt) / 1000),
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
    },
    upstreams,
    inFlight: s.store.inFlight().map((d) => ({ digest: d.digest.value, host: d.host, bytes: d.written, size: d.expectedSize ?? null })),
    topRepositories: s.collector.topRepositories(),
    recentRequests: s.collector.recentRequests(),
    series: s.collector.series(),
  };
}
