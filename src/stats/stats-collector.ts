import { servedFromCache, type RegistryRequest } from "../registry/request-context.js";
import { LruMap } from "../util/lru-map.js";

export interface RequestRecord {
  time: number;
  host: string;
  method: string;
  repository?: string;
  reference?: string;
  kind: string;
  cache: string;
  status: number;
  bytes: number;
  durationMs: number;
}

export interface UpstreamTotals {
  requests: number;
  hits: number;
  /** Answers served stale from the cache while this host was unavailable. */
  stale: number;
  bytes: number;
  errors: number;
}

interface Bucket {
  minute: number;
  requests: number;
  hits: number;
  bytes: number;
}

export interface Totals {
  requests: number;
  contentRequests: number;
  hits: number;
  misses: number;
  stale: number;
  coalesced: number;
  bytesServed: number;
  bytesFromCache: number;
  bytesFromUpstream: number;
}

const CONTENT_KINDS = new Set(["blob", "manifest", "tag"]);
const RECENT = 100;
const MINUTES = 60;
/**
 * Rows kept per upstream host and per repository: clients choose the names, so memory is
 * bounded whatever they send; the least recently used row goes first. `totals` counts every
 * request whatever rows are kept.
 */
const MAX_ROWS = 1000;

export interface RequestCounts {
  /** A blob, a manifest or a tag: what the cache exists for. */
  content: boolean;
  /** Cached content served: an error answer is never one, whatever its cache status says. */
  hit: boolean;
  /** A hit answered from the cache because upstream was unavailable (a tag's last known answer). */
  stale: boolean;
  miss: boolean;
  coalesced: boolean;
}

/** What one completed request counts as: the one definition behind /api/stats, the stats page and /metrics. Pure. */
export function countedAs(rr: RegistryRequest, status: number): RequestCounts {
  const cache = rr.log.cache ?? "BYPASS";
  const content = CONTENT_KINDS.has(rr.log.kind ?? "other");
  const hit = content && servedFromCache(cache) && status < 400;
  return { content, hit, stale: hit && cache === "STALE", miss: content && cache === "MISS", coalesced: content && cache === "COALESCED" };
}

/** In-memory aggregates behind /api/stats and the stats page; fed one completed request at a time. */
export class StatsCollector {
  readonly totals: Totals = { requests: 0, contentRequests: 0, hits: 0, misses: 0, stale: 0, coalesced: 0, bytesServed: 0, bytesFromCache: 0, bytesFromUpstream: 0 };
  private readonly upstreams: LruMap<string, UpstreamTotals>;
  private readonly repositories: LruMap<string, number>;
  /** CONNECTs not intercepted, per host: tunnelled untouched, or refused. */
  private readonly connects: LruMap<string, { tunnelled: number; denied: number }>;
  private readonly recent: RequestRecord[] = [];
  private readonly buckets: Bucket[] = [];

  constructor(
    private readonly now: () => number = Date.now,
    maxRows = MAX_ROWS,
  ) {
    this.upstreams = new LruMap(maxRows);
    this.repositories = new LruMap(maxRows);
    this.connects = new LruMap(maxRows);
  }

  observe(rr: RegistryRequest, status: number, bytes: number, durationMs: number): void {
    const time = this.now();
    const log = rr.log;
    const cache = log.cache ?? "BYPASS";
    const kind = log.kind ?? "other";
    const counts = countedAs(rr, status);
    const fromCache = counts.hit;
    const t = this.totals;
    t.requests += 1;
    t.bytesServed += bytes;
    if (counts.content) {
      t.contentRequests += 1;
      if (fromCache) t.hits += 1;
      if (counts.miss) t.misses += 1;
      if (counts.stale) t.stale += 1;
      if (counts.coalesced) t.coalesced += 1;
      if (fromCache) t.bytesFromCache += bytes;
      else t.bytesFromUpstream += bytes;
    }
    const up = this.upstreams.get(log.host) ?? { requests: 0, hits: 0, stale: 0, bytes: 0, errors: 0 };
    up.requests += 1;
    up.bytes += bytes;
    if (fromCache) up.hits += 1;
    if (counts.stale) up.stale += 1;
    if (status >= 500 || log.upstreamStatus === 0) up.errors += 1;
    this.upstreams.set(log.host, up);
    if (log.repository && bytes > 0) {
      const key = `${log.host}/${log.repository}`;
      this.repositories.set(key, (this.repositories.get(key) ?? 0) + bytes);
    }
    this.recent.push({ time, host: log.host, method: log.method, repository: log.repository, reference: log.digest ?? log.tag, kind, cache, status, bytes, durationMs });
    if (this.recent.length > RECENT) this.recent.shift();
    const minute = Math.floor(time / 60_000);
    let bucket = this.buckets[this.buckets.length - 1];
    if (!bucket || bucket.minute !== minute) {
      bucket = { minute, requests: 0, hits: 0, bytes: 0 };
      this.buckets.push(bucket);
      while (this.buckets.length > 0 && this.buckets[0]!.minute <= minute - MINUTES) this.buckets.shift();
    }
    if (CONTENT_KINDS.has(kind)) {
      bucket.requests += 1;
      if (fromCache) bucket.hits += 1;
    }
    bucket.bytes += bytes;
  }

  /** The hosts with a row, least recently active first. */
  upstreamTotals(): IterableIterator<[string, UpstreamTotals]> {
    return this.upstreams.entries();
  }

  /** A CONNECT the policy did not intercept: the stats page shows what went past the cache. */
  observeConnect(host: string, action: "tunnel" | "deny"): void {
    const row = this.connects.get(host) ?? { tunnelled: 0, denied: 0 };
    if (action === "tunnel") row.tunnelled += 1;
    else row.denied += 1;
    this.connects.set(host, row);
  }

  topConnects(limit = 10): { host: string; tunnelled: number; denied: number }[] {
    return [...this.connects.entries()]
      .sort((a, b) => b[1].tunnelled + b[1].denied - (a[1].tunnelled + a[1].denied))
      .slice(0, limit)
      .map(([host, row]) => ({ host, ...row }));
  }

  topRepositories(limit = 10): { repository: string; bytes: number }[] {
    return [...this.repositories.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, limit)
      .map(([repository, bytes]) => ({ repository, bytes }));
  }

  recentRequests(): RequestRecord[] {
    return [...this.recent].reverse();
  }

  /** One point per minute of the last hour (empty minutes included), oldest first. */
  series(): { minute: number; bytes: number; requests: number; hitRatio: number | null }[] {
    const current = Math.floor(this.now() / 60_000);
    const byMinute = new Map(this.buckets.map((b) => [b.minute, b]));
    const out = [];
    for (let m = current - MINUTES + 1; m <= current; m++) {
      const b = byMinute.get(m);
      out.push({ minute: m * 60_000, bytes: b?.bytes ?? 0, requests: b?.requests ?? 0, hitRatio: b && b.requests > 0 ? b.hits / b.requests : null });
    }
    return out;
  }
}
