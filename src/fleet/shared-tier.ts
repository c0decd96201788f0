import { randomUUID } from "node:crypto";
import { stat } from "node:fs/promises";
import type { Readable } from "node:stream";
import { RegcacheError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import { parseDigest, type Digest } from "../oci/digest.js";
import { OCTET_STREAM } from "../oci/media-types.js";
import { streamBegins } from "../util/heap-growth.js";
import { OpenCount } from "../util/open-count.js";
import { objectContentType, rowTypes, type FleetBlob, type FleetIndex } from "./fleet-index.js";
import { HeldLease, LEASE_TTL_MS } from "./held-lease.js";
import type { ObjectStore } from "./object-store.js";
import { readInParts, type PartPlan } from "./ranged-object-reader.js";
import { UploadQueue, type UploadQueueStats } from "./upload-queue.js";

/**
 * While the object store or the index is down, a request asks it again only this often: a stalled
 * service must not cost every miss its timeout. Uploads and lease renewals keep probing meanwhile.
 */
const RECHECK_DOWN_MS = 5_000;

/** What the background probe asks for (the digest of nothing): any answer, found or not, says the store is back. */
const PROBE_DIGEST = parseDigest("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")!;
/** A record nobody writes: reading it says the index answers. */
const PROBE_RECORD = "meta:probe:none";

/**
 * Objects of two parts or more are read as ranged GETs in parallel (ranged-object-reader.ts),
 * as AWS advises for S3; smaller ones in one GET. 4 MiB parts: what the parts behind the first
 * hold in memory costs CPU, in page faults and collections, and 8 MiB parts cost a store read
 * about 25% more CPU per GB (bench/fill-cpu.ts).
 */
const PART_SIZE = 4 * 1024 * 1024;
/** Parts in flight for all reads together, where each read can still have one. */
const PARTS_BUDGET = 16;
const MOST_PARTS_PER_READ = 4;
const READ_IN_PARTS_FROM = 2 * PART_SIZE;

/**
 * A read's plan, by how many others are open: up to 4 parts in flight (16 MiB held), fewer as
 * reads multiply, down to one (the part being handed on, nothing held behind it). A replica
 * filling many layers from the store at once (a new replica, a rollout) would otherwise hold
 * 12 MiB behind each read: 80 reads would pass the 1 GiB the Deployment allows. So the parts
 * held behind the first stay within 17 (68 MiB) for all reads together: at most 4 reads open
 * at once can have opened with 4 in flight, 5 with 3 or more, 8 with 2 or more.
 */
export function partPlanFor(openBefore: number): PartPlan {
  return { partSize: PART_SIZE, partsInFlight: Math.max(1, Math.min(MOST_PARTS_PER_READ, Math.floor(PARTS_BUDGET / (openBefore + 1)))) };
}

/**
 * What the object store holds for a digest: its kind and media types as the local index keeps
 * them (BlobEntry); links: undefined when the fleet index could not say (it is down).
 */
export interface SharedCopy {
  size: number;
  kind: "blob" | "manifest";
  mediaType: string;
  linkTypes?: Record<string, string>;
  links: string[] | undefined;
}

/**
 * Who fetches a digest nobody has: this replica (holding the fleet's lease, or alone when the
 * index cannot be reached), or the replica holding the lease, whose growing file the others stream.
 */
export type FillTurn = { kind: "mine"; lease: HeldLease | undefined } | { kind: "holder"; holder: string };

export interface SharedTierStats {
  /** Contents read from the object store into the local tier. */
  objectFills: number;
  /** Contents streamed from the replica holding the lease. */
  holderFills: number;
  /** Upstream fetches made without the fleet's lease (index down, holder unreachable, lease lost): duplicates, made rare. */
  duplicateFetches: number;
  uploads: UploadQueueStats;
  /** Objects and rows the fleet's evictor removed (on the replica that held its lease). */
  evictions: number;
  /** Objects found in the store without an index row (uploaded while the index was down) and given one. */
  reindexed: number;
  /** Objects read from the store that did not match their digest (deleted). */
  damaged: number;
}

export interface SharedTierHealth {
  objectStore: "up" | "down" | "off";
  index: "up" | "down" | "off";
}

/** What a finished fill hands to the tier for upload: the file, and the row to write once it is stored. */
export interface FilledContent {
  digest: Digest;
  file: string;
  size: number;
  kind: "blob" | "manifest";
  mediaType: string;
  linkTypes?: Record<string, string>;
  links: string[];
}

/**
 * The fleet's shared tier (--blob-store, --index): the object store every replica reads through
 * its local tier, the index that says what it holds and in which repositories, and the leases
 * that make a cold digest one upstream fetch for the whole fleet. Each part is optional and each
 * may be down: then the replica acts as it would without it (docs/kubernetes.md, "Large fleets").
 */
export class SharedTier {
  private readonly uploads: UploadQueue;
  /** Object-store reads in parts open right now, each planned by how many others are (partPlanFor). */
  private readonly readsInParts = new OpenCount(partPlanFor);
  /** When the object store last failed, while it has not answered since (undefined: up). */
  private objectStoreDownAt: number | undefined;
  /** When a request last found the index down (undefined: not since it last answered). */
  private indexDownAt: number | undefined;
  readonly stats: SharedTierStats;

  constructor(
    private readonly objects: ObjectStore | undefined,
    private readonly index: FleetIndex | undefined,
    /** This replica's peer address, where the others stream a fill it holds the lease for; undefined: none (no peer channel). */
    private readonly self: string | undefined,
    private readonly logger: Logger,
  ) {
    this.uploads = new UploadQueue(logger);
    this.stats = { objectFills: 0, holderFills: 0, duplicateFetches: 0, uploads: this.uploads.stats, evictions: 0, reindexed: 0, damaged: 0 };
  }

  get health(): SharedTierHealth {
    return {
      objectStore: this.objects ? (this.objectStoreDownAt === undefined ? "up" : "down") : "off",
      index: this.index ? (this.index.available ? "up" : "down") : "off",
    };
  }

  /** Whether any configured part cannot be reached: the replica serves, with less of the fleet's help. */
  get degraded(): boolean {
    const { objectStore, index } = this.health;
    return objectStore === "down" || index === "down";
  }

  /**
   * What the object store holds for `digest`: the index's row, else the store's own answer, without
   * links (the repository must then be confirmed upstream). A row can be missing while the object
   * is there: Redis restarted empty, or lost the write after an upload; the row is then written
   * again, so that the links confirmed from now on are recorded.
   */
  async find(digest: Digest): Promise<SharedCopy | undefined> {
    if (!this.objects) return undefined;
    let indexAnswered = false;
    if (this.index && this.mayAskIndex()) {
      try {
        const row = await this.index.getBlob(digest.value);
        this.indexDownAt = undefined;
        if (row) return copyOf(row);
        indexAnswered = true;
      } catch {
        this.indexDownAt = performance.now();
      }
    }
    if (this.recentlyDown()) return undefined;
    let head;
    try {
      head = await this.observe(this.objects.head(digest));
    } catch {
      return undefined;
    }
    if (!head) return undefined;
    const types = rowTypes({ mediaType: head.mediaType ?? OCTET_STREAM });
    // Awaited: the caller's next step may link the digest, which needs the row written first.
    if (indexAnswered) await this.reindex({ digest: digest.value, size: head.size, ...types, links: [], storedAt: Date.now() });
    return { size: head.size, ...types, links: undefined };
  }

  /**
   * A row for an object found without one (stored while the index was down). Not while a replica
   * holds the lease on filling it: that replica is between storing the object and writing its
   * full row (links, types), which this bare one would hide from the replicas that read it
   * meanwhile (they would fetch again), or overwrite.
   */
  private async reindex(row: FleetBlob): Promise<void> {
    const index = this.index!;
    try {
      if ((await index.leaseHeld(`fill:${row.digest}`)) || (await index.getBlob(row.digest))) return;
      await index.putBlob(row);
    } catch {
      // The index is down: the next replica to find the object without a row writes it.
    }
  }

  /**
   * The index's row alone, when one was written since find() last looked: the holder writes it
   * just before releasing its lease, so a replica that then takes the lease checks here first.
   */
  async storedSince(digest: Digest): Promise<SharedCopy | undefined> {
    if (!this.objects || !this.index) return undefined;
    const row = await this.index.getBlob(digest.value).catch(() => undefined);
    return row && copyOf(row);
  }

  /**
   * The object's bytes, for a fill of the local tier (verified by the download like upstream's).
   * `size`: what the index or the store's HEAD said; the answer's size is the store's own (the
   * whole object's), for the caller to check. `from`: the first byte wanted, when the store
   * continues a fill another source began; the body then holds the bytes from there on.
   */
  async open(digest: Digest, size: number, from = 0): Promise<{ body: Readable; size: number }> {
    if (this.recentlyDown()) throw new RegcacheError("SHARED_STORE", "the object store did not answer a moment ago");
    const got = this.objects ? await this.read(this.objects, digest, size, from) : undefined;
    if (!got) {
      // Deleted behind the index's back (a lifecycle rule, an operator): the row goes too.
      this.index?.deleteBlob(digest.value).catch(() => undefined);
      throw new RegcacheError("SHARED_STORE", `the object store no longer holds ${digest.value}`);
    }
    this.stats.objectFills += 1;
    this.index?.touch(digest.value);
    return got;
  }

  private read(objects: ObjectStore, digest: Digest, size: number, from: number): Promise<{ body: Readable; size: number } | undefined> {
    if (size - from < READ_IN_PARTS_FROM) return this.observe(objects.get(digest, from > 0 ? { start: from, end: size - 1 } : undefined));
    const read = this.readsInParts.open();
    return readInParts((range, signal) => this.observe(objects.get(digest, range, signal)), size, read.plan, digest.value, from).then(
      (got) => {
        if (got) got.body.once("close", read.closed);
        else read.closed();
        return got;
      },
      (err: unknown) => {
        read.closed();
        throw err;
      },
    );
  }

  /** An object that did not match its digest: deleted with its row, so that the next request fetches it afresh. */
  discard(digest: Digest): void {
    this.stats.damaged += 1;
    this.logger.error({ digest: digest.value }, "the object store's copy does not match its digest; deleted from the store");
    this.objects?.delete(digest).catch(() => undefined);
    this.index?.deleteBlob(digest.value).catch(() => undefined);
  }

  /** Records that upstream confirmed a stored digest in a repository, with its Content-Type there (no row: nothing to record). */
  link(digest: Digest, hostRepository: string, contentType?: string): void {
    this.index?.link(digest.value, hostRepository, contentType).catch(() => undefined);
  }

  /**
   * Takes the fleet's lease on filling `digest`, or says who holds it. Without an index, or with
   * the index down, every replica fills on its own (coalesced within the replica, as without a fleet).
   */
  async turn(digest: Digest): Promise<FillTurn> {
    if (!this.index) return { kind: "mine", lease: undefined };
    if (!this.mayAskIndex()) {
      this.stats.duplicateFetches += 1;
      return { kind: "mine", lease: undefined };
    }
    const name = `fill:${digest.value}`;
    try {
      const result = await this.index.acquireLease(name, this.self ?? `unreachable-${randomUUID()}`, LEASE_TTL_MS);
      this.indexDownAt = undefined;
      if (result.held) return { kind: "mine", lease: new HeldLease(this.index, name, result.token, () => (this.stats.duplicateFetches += 1), this.logger) };
      if (this.self !== undefined && result.holder !== this.self && !result.holder.startsWith("unreachable-")) return { kind: "holder", holder: result.holder };
      // A holder nobody can stream from (no peer channel, or this replica's own earlier run): fetch too.
      this.stats.duplicateFetches += 1;
      return { kind: "mine", lease: undefined };
    } catch {
      this.indexDownAt = performance.now();
      this.stats.duplicateFetches += 1;
      return { kind: "mine", lease: undefined };
    }
  }

  private recentlyDown(): boolean {
    return this.objectStoreDownAt !== undefined && performance.now() - this.objectStoreDownAt < RECHECK_DOWN_MS;
  }

  private mayAskIndex(): boolean {
    return this.indexDownAt === undefined || this.index!.available || performance.now() - this.indexDownAt >= RECHECK_DOWN_MS;
  }

  /**
   * Asks each part marked down whether it answers again, one request each; a part that answers
   * is marked up. Run in the background (start-shared-tier.ts): otherwise a marker would clear
   * only when a client's request happened to reach that part.
   */
  async probeDown(): Promise<void> {
    if (this.objects && this.objectStoreDownAt !== undefined) await this.observe(this.objects.head(PROBE_DIGEST)).catch(() => undefined);
    if (this.index && !this.index.available) {
      await this.index.getRecord(PROBE_RECORD).then(
        () => (this.indexDownAt = undefined),
        () => undefined,
      );
    }
  }

  /** A fill this replica could not get from the lease holder: it fetches upstream itself, a duplicate. */
  holderFailed(): void {
    this.stats.duplicateFetches += 1;
  }

  holderServed(): void {
    this.stats.holderFills += 1;
  }

  /**
   * After this replica filled `content` from upstream: it is uploaded in the background, its row
   * written once the object is stored, and the lease (kept meanwhile, so that the others stream
   * from this replica's disk) released.
   */
  stored(content: FilledContent, lease: HeldLease | undefined): void {
    if (!this.objects) {
      lease?.release();
      return;
    }
    const objects = this.objects;
    this.uploads.add({
      key: content.digest.value,
      run: async () => {
        // Evicted from the local tier before its turn came: upstream still has it.
        if ((await stat(content.file).catch(() => undefined))?.size !== content.size) return "gone";
        const streamEnded = streamBegins();
        try {
          await this.observe(objects.put(content.digest, content.file, content.size, objectContentType(content.kind, content.mediaType)));
        } catch (err) {
          // While the store refuses, the others fetch on their own (counted) rather than wait on a lease renewed for hours.
          lease?.release();
          throw err;
        } finally {
          streamEnded();
        }
        const row = { digest: content.digest.value, size: content.size, kind: content.kind, mediaType: content.mediaType, linkTypes: content.linkTypes, links: content.links, storedAt: Date.now() };
        await this.index?.putBlob(row).catch((err: unknown) => {
          this.logger.warn({ digest: content.digest.value, err: (err as Error).message }, "object stored, but the fleet index did not record it; other replicas find it by asking the store");
        });
        return "uploaded";
      },
      settled: () => lease?.release(),
    });
  }

  close(): void {
    this.uploads.close();
    this.objects?.close();
  }

  /** Tracks whether the object store answers, for health. */
  private async observe<T>(call: Promise<T>): Promise<T> {
    try {
      const result = await call;
      this.objectStoreDownAt = undefined;
      return result;
    } catch (err) {
      if (err instanceof RegcacheError && err.code === "SHARED_STORE") this.objectStoreDownAt = performance.now();
      throw err;
    }
  }
}

function copyOf(row: FleetBlob): SharedCopy {
  return { size: row.size, ...rowTypes(row), links: row.links };
}
