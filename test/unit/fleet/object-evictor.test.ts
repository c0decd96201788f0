import { describe, expect, it } from "vitest";
import type { FleetBlob, FleetIndex, LeaseResult } from "../../../src/fleet/fleet-index.js";
import { ObjectEvictor, type ObjectEvictorOptions } from "../../../src/fleet/object-evictor.js";
import type { ObjectStore, StoredObject } from "../../../src/fleet/object-store.js";
import { createLogger } from "../../../src/log/logger.js";

const digest = (n: number): string => `sha256:${n.toString(16).padStart(64, "0")}`;

/**
 * Rows with their last access (oldest first), objects the store lists (those with a row and any
 * `orphans` without one), and leases anyone can hold unless `leaseHolder` holds them.
 */
function fleet(sizes: number[], opts: { leaseHolder?: string; orphans?: StoredObject[]; listingFails?: boolean } = {}) {
  const rows = new Map<string, { size: number; lastAccess: number; kind?: string; mediaType?: string }>(sizes.map((size, i) => [digest(i), { size, lastAccess: i }]));
  const stored = new Map<string, StoredObject>([...rows].map(([d, r]) => [d, { digest: d, size: r.size, lastModified: r.lastAccess }]));
  for (const o of opts.orphans ?? []) stored.set(o.digest, o);
  const deletedObjects: string[] = [];
  const released: string[] = [];
  const renewed: [string, number][] = [];
  const index = {
    async acquireLease(_name: string, holder: string): Promise<LeaseResult> {
      return opts.leaseHolder ? { held: false, holder: opts.leaseHolder } : { held: true, token: holder };
    },
    async releaseLease(name: string) {
      released.push(name);
    },
    async renewLease(name: string, _token: string, ttlMs: number) {
      renewed.push([name, ttlMs]);
      return true;
    },
    async storedBytes() {
      let total = 0;
      for (const r of rows.values()) total += r.size;
      return total;
    },
    async leastRecentlyUsed(limit: number) {
      return [...rows].sort((a, b) => a[1].lastAccess - b[1].lastAccess).slice(0, limit).map(([d, r]) => ({ digest: d, size: r.size, lastAccess: r.lastAccess }));
    },
    async deleteBlob(d: string) {
      rows.delete(d);
    },
    async withoutRows(digests: string[]) {
      return digests.filter((d) => !rows.has(d));
    },
    async putBlob(entry: FleetBlob) {
      rows.set(entry.digest, { size: entry.size, lastAccess: entry.storedAt, kind: entry.kind, mediaType: entry.mediaType });
    },
  } as unknown as FleetIndex;
  const objects = {
    async delete(d: { value: string }) {
      deletedObjects.push(d.value);
      stored.delete(d.value);
    },
    async *list() {
      if (opts.listingFails) throw new Error("store down");
      yield* [...stored.values()];
    },
    async head(d: { value: string }) {
      const o = stored.get(d.value);
      return o && { size: o.size, mediaType: o.digest === digest(100) ? "application/vnd.oci.image.manifest.v1+json" : undefined };
    },
  } as unknown as ObjectStore;
  const counted = { evicted: 0, reindexed: 0 };
  const evictor = (options: ObjectEvictorOptions) =>
    new ObjectEvictor(objects, index, options, { evicted: (n) => (counted.evicted += n), reindexed: (n) => (counted.reindexed += n) }, createLogger("silent"));
  return { rows, deletedObjects, released, renewed, counted, evictor };
}

describe("ObjectEvictor", () => {
  it("under the bound, deletes nothing; over it, the least recently read objects and rows go, down to 90% of the bound", async () => {
    const under = fleet([100, 100, 100]);
    expect(await under.evictor({ maxBytes: 1_000 }).runOnce()).toBe(0);
    expect(under.deletedObjects).toEqual([]);

    const over = fleet([300, 300, 300, 300]);
    // 1200 bytes against a bound of 1000: down to 900 or less, oldest first.
    expect(await over.evictor({ maxBytes: 1_000 }).runOnce()).toBe(1);
    expect(over.deletedObjects).toEqual([digest(0)]);
    expect([...over.rows.keys()]).toEqual([digest(1), digest(2), digest(3)]);
    expect(over.counted.evicted).toBe(1);
    expect(over.released).toEqual(["evictor"]);
  });

  it("goes on past one batch until under 90% of the bound", async () => {
    const many = fleet(Array.from({ length: 1_200 }, () => 10));
    expect(await many.evictor({ maxBytes: 10_000 }).runOnce()).toBe(300);
    expect(many.deletedObjects[0]).toBe(digest(0));
    expect(many.deletedObjects.at(-1)).toBe(digest(299));
  });

  it("leaves the work to the replica holding the evictor's lease", async () => {
    const other = fleet([5_000], { leaseHolder: "another-replica", orphans: [{ digest: digest(7), size: 9, lastModified: 0 }] });
    expect(await other.evictor({ maxBytes: 1_000 }).runOnce()).toBe(0);
    expect(other.deletedObjects).toEqual([]);
    expect(other.released).toEqual([]);
    expect(other.rows.has(digest(7))).toBe(false);
  });

  it("gives stored objects without a row one (counted, placed in the LRU by when they were stored), so they are evicted in turn", async () => {
    const now = Date.now();
    const orphans = [
      { digest: digest(100), size: 400, lastModified: -5 },
      { digest: digest(101), size: 400, lastModified: -4 },
      // Young: maybe an upload whose row is being written.
      { digest: digest(102), size: 400, lastModified: now },
    ];
    const f = fleet([300, 300], { orphans });
    // 600 bytes of rows are under the bound; with the orphans' 800 they are over it.
    expect(await f.evictor({ maxBytes: 1_000, orphanGraceMs: 60_000 }).runOnce()).toBe(2);
    expect(f.counted.reindexed).toBe(2);
    expect(f.deletedObjects).toEqual([digest(100), digest(101)]);
    expect([...f.rows.keys()]).toEqual([digest(0), digest(1)]);
    expect(f.rows.has(digest(102))).toBe(false);
    // The reconcile lease is the fleet's hourly timer: kept, not released.
    expect(f.released).toEqual(["evictor"]);
  });

  it("keeps whether an object is a manifest from the store's Content-Type; a manifest's type is asked for where it is served", async () => {
    const f = fleet([], { orphans: [{ digest: digest(100), size: 10, lastModified: 0 }, { digest: digest(101), size: 10, lastModified: 0 }] });
    await f.evictor({ maxBytes: 1_000, orphanGraceMs: 0 }).runOnce();
    expect(f.rows.get(digest(100))).toMatchObject({ kind: "manifest", mediaType: "" });
    expect(f.rows.get(digest(101))).toMatchObject({ kind: "blob", mediaType: "application/octet-stream" });
  });

  it("a listing that fails keeps the turn for 10 minutes (not an hour, nor a full relist every minute) and still evicts", async () => {
    const f = fleet([600, 600], { listingFails: true });
    expect(await f.evictor({ maxBytes: 1_000 }).runOnce()).toBe(1);
    expect(f.renewed).toEqual([["reconcile", 10 * 60_000]]);
    expect(f.released).toEqual(["evictor"]);
  });

  it("renews the hour's turn with each page of a long listing", async () => {
    const orphans = Array.from({ length: 2_500 }, (_, i) => ({ digest: digest(1_000 + i), size: 1, lastModified: 0 }));
    const f = fleet([], { orphans });
    await f.evictor({ maxBytes: 1_000_000, orphanGraceMs: 0 }).runOnce();
    expect(f.counted.reindexed).toBe(2_500);
    expect(f.renewed).toEqual([["reconcile", 3_600_000], ["reconcile", 3_600_000], ["reconcile", 3_600_000]]);
  });
});
