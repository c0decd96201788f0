import { describe, expect, it } from "vitest";
import type { FleetBlob, FleetIndex, LeaseResult } from "../../../src/fleet/fleet-index.js";
import { ObjectEvictor } from "../../../src/fleet/object-evictor.js";
import type { ObjectStore } from "../../../src/fleet/object-store.js";
import { createLogger } from "../../../src/log/logger.js";

const digest = (n: number): string => `sha256:${n.toString(16).padStart(64, "0")}`;

/** Rows with their last access, in a map ordered oldest first, and a lease anyone can hold or not. */
function fleet(sizes: number[], leaseHolder?: string) {
  const rows = new Map<string, { size: number; lastAccess: number }>(sizes.map((size, i) => [digest(i), { size, lastAccess: i }]));
  const deletedObjects: string[] = [];
  const released: string[] = [];
  const index = {
    async acquireLease(_name: string, holder: string): Promise<LeaseResult> {
      return leaseHolder ? { held: false, holder: leaseHolder } : { held: true, token: holder };
    },
    async releaseLease(name: string) {
      released.push(name);
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
  } as unknown as FleetIndex & { putBlob(entry: FleetBlob): Promise<void> };
  const objects = {
    async delete(d: { value: string }) {
      deletedObjects.push(d.value);
    },
  } as unknown as ObjectStore;
  return { rows, deletedObjects, released, index, objects };
}

describe("ObjectEvictor", () => {
  it("under the bound, deletes nothing; over it, the least recently read objects and rows go, down to 90% of the bound", async () => {
    const under = fleet([100, 100, 100]);
    expect(await new ObjectEvictor(under.objects, under.index, 1_000, () => undefined, createLogger("silent")).runOnce()).toBe(0);
    expect(under.deletedObjects).toEqual([]);

    const over = fleet([300, 300, 300, 300]);
    let reported = 0;
    const evicted = await new ObjectEvictor(over.objects, over.index, 1_000, (n) => (reported = n), createLogger("silent")).runOnce();
    // 1200 bytes against a bound of 1000: down to 900 or less, oldest first.
    expect(evicted).toBe(1);
    expect(over.deletedObjects).toEqual([digest(0)]);
    expect([...over.rows.keys()]).toEqual([digest(1), digest(2), digest(3)]);
    expect(reported).toBe(1);
    expect(over.released).toEqual(["evictor"]);
  });

  it("goes on past one batch until under 90% of the bound", async () => {
    const many = fleet(Array.from({ length: 1_200 }, () => 10));
    const evicted = await new ObjectEvictor(many.objects, many.index, 10_000, () => undefined, createLogger("silent")).runOnce();
    expect(evicted).toBe(300);
    expect(many.deletedObjects[0]).toBe(digest(0));
    expect(many.deletedObjects.at(-1)).toBe(digest(299));
  });

  it("leaves the work to the replica holding the evictor's lease", async () => {
    const other = fleet([5_000], "another-replica");
    expect(await new ObjectEvictor(other.objects, other.index, 1_000, () => undefined, createLogger("silent")).runOnce()).toBe(0);
    expect(other.deletedObjects).toEqual([]);
    expect(other.released).toEqual([]);
  });
});
