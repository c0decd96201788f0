import { randomUUID } from "node:crypto";
import type { Logger } from "../log/logger.js";
import { parseDigest } from "../oci/digest.js";
import type { FleetIndex } from "./fleet-index.js";
import type { ObjectStore } from "./object-store.js";

/** The evictor looks this often; whichever replica takes its lease does the work. */
const EVICT_EVERY_MS = 60_000;
const EVICTOR_LEASE_MS = 2 * EVICT_EVERY_MS;
/** Eviction goes below the bound, as the local tier's does, so that one upload does not trigger another round. */
const LOW_WATER_RATIO = 0.9;
const BATCH = 500;

/**
 * Keeps the object store within --blob-store-max-size: one replica at a time (the holder of the
 * "evictor" lease) deletes the least recently read objects and their rows. Without an index there
 * is no fleet-wide LRU to go by, so the store's bound is then left to the bucket's lifecycle rules.
 */
export class ObjectEvictor {
  private timer: NodeJS.Timeout | undefined;
  private readonly id = randomUUID();

  constructor(
    private readonly objects: ObjectStore,
    private readonly index: FleetIndex,
    private readonly maxBytes: number,
    private readonly onEvicted: (count: number) => void,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      this.runOnce().catch((err: unknown) => this.logger.warn({ err: (err as Error).message }, "object store eviction failed; trying again later"));
    }, EVICT_EVERY_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One round, if this replica takes the lease; says how many objects went. */
  async runOnce(): Promise<number> {
    const lease = await this.index.acquireLease("evictor", this.id, EVICTOR_LEASE_MS);
    if (!lease.held) return 0;
    let evicted = 0;
    try {
      let total = await this.index.storedBytes();
      const target = Math.floor(this.maxBytes * LOW_WATER_RATIO);
      while (total > this.maxBytes || (evicted > 0 && total > target)) {
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
      this.onEvicted(evicted);
      this.logger.info({ evicted, maxBytes: this.maxBytes }, "object store over its bound: least recently read objects deleted");
    }
    return evicted;
  }
}
