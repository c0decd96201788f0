import { randomUUID } from "node:crypto";
import type { Logger } from "../log/logger.js";
import { parseDigest } from "../oci/digest.js";
import { OCTET_STREAM } from "../oci/media-types.js";
import { rowTypes, type FleetIndex } from "./fleet-index.js";
import type { ObjectStore, StoredObject } from "./object-store.js";

/** The evictor looks this often; whichever replica takes its lease does the work. */
const EVICT_EVERY_MS = 60_000;
const EVICTOR_LEASE_MS = 2 * EVICT_EVERY_MS;
/** Eviction goes below the bound, as the local tier's does, so that one upload does not trigger another round. */
const LOW_WATER_RATIO = 0.9;
const BATCH = 500;
/**
 * The store is listed this often for the fleet: the "reconcile" lease is taken for this long and
 * never released, so it doubles as the fleet-wide timer (whoever takes it next lists next).
 */
const RECONCILE_EVERY_MS = 60 * 60_000;
/** An object younger than this may be an upload whose row is being written: it is left to its uploader. */
const ORPHAN_GRACE_MS = 10 * 60_000;
/** Digests looked up in the index per round trip: one page of the store's listing. */
const LISTING_PAGE = 1_000;
/** HEADs in flight for the objects of a page without a row (after Redis lost its data, that is every object). */
const HEADS_AT_ONCE = 16;
/** After a listing failed: the next try, on whichever replica, waits this long rather than an hour (or a minute: a full relist each time). */
const RECONCILE_RETRY_MS = 10 * 60_000;

export interface ObjectEvictorOptions {
  maxBytes: number;
  orphanGraceMs?: number;
}

export interface ObjectEvictorEvents {
  evicted(count: number): void;
  reindexed(count: number): void;
}

/**
 * Keeps the object store within --blob-store-max-size: one replica at a time (the holder of the
 * "evictor" lease) deletes the least recently read objects and their rows. Without an index there
 * is no fleet-wide LRU to go by, so the store's bound is then left to the bucket's lifecycle rules.
 *
 * The LRU knows only objects with a row. An object uploaded while the index was down, or stored
 * before the index lost its data, has none: it would be served (found by a HEAD) but never counted
 * or evicted. Once an hour one replica lists the store and writes such objects a row, placed in the
 * LRU by when they were stored, so that they are counted against the bound and evicted in turn.
 */
export class ObjectEvictor {
  private timer: NodeJS.Timeout | undefined;
  /** A round outlasting the timer's period (a long listing) is not joined by a second one. */
  private running = false;
  private readonly id = randomUUID();
  private readonly orphanGraceMs: number;

  constructor(
    private readonly objects: ObjectStore,
    private readonly index: FleetIndex,
    private readonly options: ObjectEvictorOptions,
    private readonly events: ObjectEvictorEvents,
    private readonly logger: Logger,
  ) {
    this.orphanGraceMs = options.orphanGraceMs ?? ORPHAN_GRACE_MS;
  }

  start(): void {
    this.timer = setInterval(() => {
      if (this.running) return;
      this.running = true;
      this.runOnce()
        .catch((err: unknown) => this.logger.warn({ err: (err as Error).message }, "object store eviction failed; trying again later"))
        .finally(() => (this.running = false));
    }, EVICT_EVERY_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One round: the store's listing if this replica's turn has come, then eviction if it takes the lease. Says how many objects went. */
  async runOnce(): Promise<number> {
    const turn = await this.index.acquireLease("reconcile", this.id, RECONCILE_EVERY_MS);
    if (turn.held) {
      await this.reindexOrphans(turn.token).catch(async (err: unknown) => {
        await this.index.renewLease("reconcile", turn.token, RECONCILE_RETRY_MS).catch(() => undefined);
        this.logger.warn({ err: (err as Error).message }, "listing the object store for objects without an index row failed; trying again later");
      });
    }
    return this.evict();
  }

  private async evict(): Promise<number> {
    const lease = await this.index.acquireLease("evictor", this.id, EVICTOR_LEASE_MS);
    if (!lease.held) return 0;
    const maxBytes = this.options.maxBytes;
    let evicted = 0;
    try {
      let total = await this.index.storedBytes();
      const target = Math.floor(maxBytes * LOW_WATER_RATIO);
      while (total > maxBytes || (evicted > 0 && total > target)) {
        const oldest = await this.index.leastRecentlyUsed(BATCH);
        if (oldest.length === 0) break;
        for (const { digest, size } of oldest) {
          const parsed = parseDigest(digest);
          if (parsed) await this.objects.delete(parsed);
          await this.index.deleteBlob(digest);
          total -= size;
          evicted += 1;
          if (total <= target) break;
        }
      }
    } finally {
      await this.index.releaseLease("evictor", lease.token).catch(() => undefined);
    }
    if (evicted > 0) {
      this.events.evicted(evicted);
      this.logger.info({ evicted, maxBytes }, "object store over its bound: least recently read objects deleted");
    }
    return evicted;
  }

  /** Lists the store, a page at a time, renewing the hour's turn with each page so that a long listing is not started again beside itself. */
  private async reindexOrphans(token: string): Promise<void> {
    // Wall clock for the objects' ages (the store stamps them so), the monotonic one for how long this took.
    const listedAt = Date.now();
    const startedAt = performance.now();
    let listed = 0;
    let reindexed = 0;
    let page: StoredObject[] = [];
    const settle = async (): Promise<void> => {
      const orphans = new Set(await this.index.withoutRows(page.map((o) => o.digest)));
      const todo = page.filter((o) => orphans.has(o.digest));
      page = [];
      for (let i = 0; i < todo.length; i += HEADS_AT_ONCE) {
        const done = (await Promise.all(todo.slice(i, i + HEADS_AT_ONCE).map((o) => this.reindex(o)))).filter(Boolean).length;
        reindexed += done;
        if (done > 0) this.events.reindexed(done);
      }
      await this.index.renewLease("reconcile", token, RECONCILE_EVERY_MS);
    };
    for await (const object of this.objects.list()) {
      listed += 1;
      if (listedAt - object.lastModified < this.orphanGraceMs) continue;
      page.push(object);
      if (page.length === LISTING_PAGE) await settle();
    }
    await settle();
    this.logger.info({ listed, reindexed, ms: Math.round(performance.now() - startedAt) }, "object store listed for objects without an index row");
  }

  /** Writes the row of an object that has none; its Content-Type (blob or manifest, see rowTypes) comes from a HEAD. */
  private async reindex(object: StoredObject): Promise<boolean> {
    const digest = parseDigest(object.digest);
    const head = digest && (await this.objects.head(digest));
    // Deleted since the listing, or given a row meanwhile (its uploader's row has the links: keep it).
    // A row written between this check and the write below is replaced: that loses its links (one
    // upstream re-check each) and its place in the LRU, never bytes; the 10-minute grace makes it a
    // matter of an upload finishing long after it started, within these few milliseconds.
    if (!head || (await this.index.withoutRows([object.digest])).length === 0) return false;
    await this.index.putBlob({ digest: object.digest, size: head.size, ...rowTypes({ mediaType: head.mediaType ?? OCTET_STREAM }), links: [], storedAt: object.lastModified });
    return true;
  }
}
