import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { afterEach, describe, expect, it, vi } from "vitest";
import { RegcacheError } from "../../../src/errors.js";
import type { FleetBlob, FleetIndex, LeaseResult } from "../../../src/fleet/fleet-index.js";
import type { ObjectStore } from "../../../src/fleet/object-store.js";
import { partPlanFor, SharedTier } from "../../../src/fleet/shared-tier.js";
import { createLogger } from "../../../src/log/logger.js";
import { parseDigest } from "../../../src/oci/digest.js";
import { OCTET_STREAM } from "../../../src/oci/media-types.js";

const digest = parseDigest(`sha256:${"ab".repeat(32)}`)!;
const down = () => new RegcacheError("SHARED_STORE", "down");

class FakeIndex {
  rows = new Map<string, FleetBlob>();
  leases = new Map<string, string>();
  released: string[] = [];
  failing = false;
  available = true;
  private check(): void {
    if (this.failing) throw down();
  }
  async getBlob(d: string) {
    this.check();
    return this.rows.get(d);
  }
  async putBlob(entry: FleetBlob) {
    this.check();
    this.rows.set(entry.digest, entry);
  }
  async link() {}
  async deleteBlob(d: string) {
    this.rows.delete(d);
  }
  touch() {}
  async acquireLease(name: string, holder: string): Promise<LeaseResult> {
    this.check();
    const current = this.leases.get(name);
    if (current) return { held: false, holder: current };
    this.leases.set(name, holder);
    return { held: true, token: "t" };
  }
  async renewLease() {
    return true;
  }
  async leaseHeld(name: string) {
    return this.leases.has(name);
  }
  /** As RedisFleetIndex: any command that is answered marks the index available, one that fails unavailable. */
  recordReads = 0;
  async getRecord() {
    this.recordReads += 1;
    this.available = !this.failing;
    this.check();
    return undefined;
  }
  async releaseLease(name: string) {
    this.released.push(name);
    this.leases.delete(name);
  }
}

class FakeObjects {
  objects = new Map<string, { size: number; mediaType: string }>();
  failPuts = 0;
  puts = 0;
  failing = false;
  heads = 0;
  async head(d: { value: string }) {
    this.heads += 1;
    if (this.failing) throw down();
    return this.objects.get(d.value);
  }
  /** The ranges asked for, undefined for a whole object. */
  gets: ({ start: number; end: number } | undefined)[] = [];
  async get(d: { value: string }, range?: { start: number; end: number }) {
    if (this.failing) throw down();
    this.gets.push(range);
    const o = this.objects.get(d.value);
    return o && { body: Readable.from([Buffer.alloc(range ? range.end - range.start + 1 : o.size, range ? range.start >> 20 : 0)]), size: o.size };
  }
  async put(d: { value: string }, _file: string, size: number, mediaType: string) {
    this.puts += 1;
    if (this.failPuts > 0) {
      this.failPuts -= 1;
      throw down();
    }
    this.objects.set(d.value, { size, mediaType });
  }
  async delete(d: { value: string }) {
    this.objects.delete(d.value);
  }
  async *list() {}
  close() {}
}

const logger = createLogger("silent");
const tier = (objects: FakeObjects | undefined, index: FakeIndex | undefined, self: string | undefined) =>
  new SharedTier(objects as unknown as ObjectStore | undefined, index as unknown as FleetIndex | undefined, self, logger);

afterEach(() => vi.useRealTimers());

describe("SharedTier: whose turn a fill is", () => {
  it("the first replica takes the lease; the next is told who holds it", async () => {
    const index = new FakeIndex();
    const first = await tier(new FakeObjects(), index, "10.0.0.1:3129").turn(digest);
    expect(first.kind).toBe("mine");
    expect(first.kind === "mine" && first.lease).toBeTruthy();
    expect(await tier(new FakeObjects(), index, "10.0.0.2:3129").turn(digest)).toEqual({ kind: "holder", holder: "10.0.0.1:3129" });
    if (first.kind === "mine") first.lease!.release();
    expect(index.released).toEqual([`fill:${digest.value}`]);
  });

  it("fills alone, and counts a duplicate, when the index is down, when the holder is this replica's earlier run, or when there is no peer channel", async () => {
    const index = new FakeIndex();
    index.failing = true;
    const t = tier(new FakeObjects(), index, "10.0.0.1:3129");
    expect(await t.turn(digest)).toEqual({ kind: "mine", lease: undefined });
    expect(t.stats.duplicateFetches).toBe(1);

    const held = new FakeIndex();
    held.leases.set(`fill:${digest.value}`, "10.0.0.1:3129");
    const restarted = tier(new FakeObjects(), held, "10.0.0.1:3129");
    expect(await restarted.turn(digest)).toEqual({ kind: "mine", lease: undefined });
    expect(restarted.stats.duplicateFetches).toBe(1);

    const shared = new FakeIndex();
    await tier(new FakeObjects(), shared, undefined).turn(digest);
    const other = tier(new FakeObjects(), shared, "10.0.0.2:3129");
    expect((await other.turn(digest)).kind).toBe("mine");
    expect(other.stats.duplicateFetches).toBe(1);
  });

  it("without an index every fill is this replica's, uncounted", async () => {
    const t = tier(new FakeObjects(), undefined, "10.0.0.1:3129");
    expect(await t.turn(digest)).toEqual({ kind: "mine", lease: undefined });
    expect(t.stats.duplicateFetches).toBe(0);
  });
});

describe("SharedTier: what the object store holds", () => {
  it("says so from the index's row, with its links and types; from the store itself, without links or a manifest's type, when the index is down", async () => {
    const index = new FakeIndex();
    const objects = new FakeObjects();
    objects.objects.set(digest.value, { size: 5, mediaType: "application/vnd.oci.image.manifest.v1+json" });
    const linkTypes = { "quay.io/a": "application/vnd.oci.image.manifest.v1+json" };
    index.rows.set(digest.value, { digest: digest.value, size: 5, kind: "manifest", mediaType: "", linkTypes, links: ["quay.io/a"], storedAt: 1 });
    const t = tier(objects, index, "10.0.0.1:3129");
    expect(await t.find(digest)).toEqual({ size: 5, kind: "manifest", mediaType: "", linkTypes, links: ["quay.io/a"] });
    index.failing = true;
    // Its Content-Type there may be one registry's label: the type is asked for where it is served.
    expect(await t.find(digest)).toEqual({ size: 5, kind: "manifest", mediaType: "", links: undefined });
    expect(t.health).toEqual({ objectStore: "up", index: "up" });
    objects.failing = true;
    expect(await t.find(digest)).toBeUndefined();
    expect(t.health.objectStore).toBe("down");
    expect(t.degraded).toBe(true);
  });

  it("a store or index that is down is asked again only every 5 s, so a stalled one does not cost every miss its timeout", async () => {
    vi.useFakeTimers({ toFake: ["Date", "performance"] });
    const index = new FakeIndex();
    const objects = new FakeObjects();
    const t = tier(objects, index, "10.0.0.1:3129");
    const asked = { index: 0, objects: 0 };
    const getBlob = index.getBlob.bind(index);
    const head = objects.head.bind(objects);
    index.getBlob = async (d: string) => (asked.index++, getBlob(d));
    objects.head = async (d: { value: string }) => (asked.objects++, head(d));
    index.failing = true;
    index.available = false;
    objects.failing = true;
    await t.find(digest);
    await t.find(digest);
    expect(await t.turn(digest)).toEqual({ kind: "mine", lease: undefined });
    expect(asked).toEqual({ index: 1, objects: 1 });
    vi.advanceTimersByTime(5_000);
    index.failing = false;
    index.available = true;
    objects.failing = false;
    await t.find(digest);
    expect(asked).toEqual({ index: 2, objects: 2 });
    expect(t.health).toEqual({ objectStore: "up", index: "up" });
  });

  it("an object without a row (Redis restarted empty) is found by asking the store, and its row written again, without links", async () => {
    const objects = new FakeObjects();
    objects.objects.set(digest.value, { size: 5, mediaType: OCTET_STREAM });
    const index = new FakeIndex();
    expect(await tier(objects, index, "10.0.0.1:3129").find(digest)).toEqual({ size: 5, kind: "blob", mediaType: OCTET_STREAM, links: undefined });
    await new Promise((r) => setImmediate(r));
    expect(index.rows.get(digest.value)).toMatchObject({ size: 5, kind: "blob", mediaType: OCTET_STREAM, links: [] });
    objects.objects.clear();
    index.rows.clear();
    expect(await tier(objects, index, "10.0.0.1:3129").find(digest)).toBeUndefined();
  });

  it("an object whose fill lease is held gets no bare row: its holder is between storing it and writing the full row", async () => {
    const objects = new FakeObjects();
    objects.objects.set(digest.value, { size: 5, mediaType: "application/json" });
    const index = new FakeIndex();
    const holder = tier(objects, index, "10.0.0.2:3129");
    const turn = await holder.turn(digest);
    expect(turn.kind).toBe("mine");
    expect(await tier(objects, index, "10.0.0.1:3129").find(digest)).toMatchObject({ size: 5, kind: "manifest", mediaType: "" });
    await new Promise((r) => setImmediate(r));
    expect(index.rows.has(digest.value)).toBe(false);
    const full: FleetBlob = { digest: digest.value, size: 5, kind: "manifest", mediaType: "", linkTypes: { "r.test/app": "application/vnd.oci.image.manifest.v1+json" }, links: ["r.test/app"], storedAt: 1 };
    await index.putBlob(full);
    if (turn.kind === "mine") turn.lease?.release();
    expect(await tier(objects, index, "10.0.0.1:3129").storedSince(digest)).toMatchObject({ links: ["r.test/app"], linkTypes: full.linkTypes });
  });
});

describe("SharedTier: reading an object for a fill", () => {
  const MiB = 1024 * 1024;
  const readAll = async (body: Readable): Promise<Buffer> => {
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  };

  it("reads a large object in ranged parts, in order, and a small one in one GET; each counts as a fill", async () => {
    const objects = new FakeObjects();
    const t = tier(objects, new FakeIndex(), undefined);
    const size = 40 * MiB + 5;
    objects.objects.set(digest.value, { size, mediaType: OCTET_STREAM });
    const large = await t.open(digest, size);
    expect(large.size).toBe(size);
    const bytes = await readAll(large.body);
    expect(bytes.length).toBe(size);
    // The fake fills each part with its first MiB's number: the parts arrive in the object's order.
    const partStarts = [0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40];
    for (const at of partStarts) expect(bytes[at * MiB], `byte ${at} MiB`).toBe(at);
    expect(objects.gets.every((range) => range !== undefined)).toBe(true);
    expect(objects.gets.map((range) => range!.start)).toEqual(partStarts.map((at) => at * MiB));
    expect(objects.gets.at(-1)!.end).toBe(size - 1);

    objects.gets.length = 0;
    objects.objects.set(digest.value, { size: MiB, mediaType: OCTET_STREAM });
    const small = await t.open(digest, MiB);
    expect((await readAll(small.body)).length).toBe(MiB);
    expect(objects.gets).toEqual([undefined]);
    expect(t.stats.objectFills).toBe(2);
  });

  it("continuing another source's read from an offset: the bytes from there, in ranged parts counted from it, or one ranged GET for what is left of a small one", async () => {
    const objects = new FakeObjects();
    const t = tier(objects, new FakeIndex(), undefined);
    const size = 40 * MiB + 5;
    objects.objects.set(digest.value, { size, mediaType: OCTET_STREAM });
    const rest = await t.open(digest, size, 3 * MiB);
    expect(rest.size).toBe(size);
    expect((await readAll(rest.body)).length).toBe(size - 3 * MiB);
    expect(objects.gets.map((range) => range!.start)).toEqual([3, 7, 11, 15, 19, 23, 27, 31, 35, 39].map((at) => at * MiB));

    objects.gets.length = 0;
    const tail = await t.open(digest, size, 36 * MiB);
    expect((await readAll(tail.body)).length).toBe(size - 36 * MiB);
    expect(objects.gets).toEqual([{ start: 36 * MiB, end: size - 1 }]);
  });

  it("an object deleted behind the index's back fails the read and its row goes too, large or small", async () => {
    for (const size of [MiB, 40 * MiB]) {
      const index = new FakeIndex();
      index.rows.set(digest.value, { digest: digest.value, size, mediaType: OCTET_STREAM, links: [], storedAt: 0 });
      const t = tier(new FakeObjects(), index, undefined);
      await expect(t.open(digest, size)).rejects.toThrow(/no longer holds/);
      expect(index.rows.has(digest.value), `size ${size}`).toBe(false);
      expect(t.stats.objectFills).toBe(0);
    }
  });
});

describe("SharedTier: uploads after a fill", () => {
  it("uploads, writes the row, releases the lease; a store that is down is retried, and the lease released at the first failure", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "setInterval", "Date", "performance"] });
    const dir = mkdtempSync(path.join(tmpdir(), "regcache-tier-"));
    const file = path.join(dir, "blob");
    writeFileSync(file, Buffer.alloc(7));
    const index = new FakeIndex();
    const objects = new FakeObjects();
    objects.failPuts = 1;
    const t = tier(objects, index, "10.0.0.1:3129");
    const turn = await t.turn(digest);
    t.stored({ digest, file, size: 7, kind: "blob", mediaType: "application/octet-stream", links: ["quay.io/a"] }, turn.kind === "mine" ? turn.lease : undefined);
    await vi.waitFor(() => expect(t.stats.uploads.failures).toBe(1));
    expect(index.released).toEqual([`fill:${digest.value}`]);
    expect(index.rows.has(digest.value)).toBe(false);
    await vi.waitFor(() => expect(t.stats.uploads.uploaded).toBe(1), { timeout: 10_000, interval: 500 });
    expect(objects.objects.get(digest.value)).toEqual({ size: 7, mediaType: "application/octet-stream" });
    expect(index.rows.get(digest.value)).toMatchObject({ size: 7, links: ["quay.io/a"] });
    expect(index.released).toEqual([`fill:${digest.value}`]);
    expect(t.stats.uploads).toMatchObject({ uploaded: 1, failures: 1, queued: 0 });
  });

  it("a manifest that declares no type is stored as application/json, its row keeping each repository's type", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "regcache-tier-"));
    const file = path.join(dir, "manifest");
    writeFileSync(file, Buffer.alloc(7));
    const index = new FakeIndex();
    const objects = new FakeObjects();
    const t = tier(objects, index, "10.0.0.1:3129");
    const linkTypes = { "quay.io/a": "application/vnd.docker.distribution.manifest.v2+json" };
    t.stored({ digest, file, size: 7, kind: "manifest", mediaType: "", linkTypes, links: ["quay.io/a"] }, undefined);
    await vi.waitFor(() => expect(t.stats.uploads.uploaded).toBe(1));
    expect(objects.objects.get(digest.value)).toEqual({ size: 7, mediaType: "application/json" });
    expect(index.rows.get(digest.value)).toMatchObject({ kind: "manifest", mediaType: "", linkTypes, links: ["quay.io/a"] });
    expect(await t.find(digest)).toMatchObject({ kind: "manifest", mediaType: "", linkTypes });
  });

  it("a file evicted before its upload is skipped, and its lease released", async () => {
    const index = new FakeIndex();
    const objects = new FakeObjects();
    const t = tier(objects, index, "10.0.0.1:3129");
    const turn = await t.turn(digest);
    t.stored({ digest, file: "/nonexistent/regcache-test", size: 7, kind: "blob", mediaType: "application/octet-stream", links: [] }, turn.kind === "mine" ? turn.lease : undefined);
    await new Promise((r) => setTimeout(r, 50));
    expect(objects.puts).toBe(0);
    expect(index.released).toEqual([`fill:${digest.value}`]);
  });
});

describe("SharedTier: parts marked down are asked again in the background", () => {
  it("the object store and the index, once back, are marked up by the probe, with no client request; a part that is up is not asked", async () => {
    const index = new FakeIndex();
    const objects = new FakeObjects();
    const t = tier(objects, index, "10.0.0.1:3129");
    await t.probeDown();
    expect([objects.heads, index.recordReads]).toEqual([0, 0]);

    index.failing = true;
    objects.failing = true;
    index.available = false;
    expect(await t.find(digest)).toBeUndefined();
    expect(t.health).toEqual({ objectStore: "down", index: "down" });
    await t.probeDown();
    expect(t.degraded).toBe(true);

    index.failing = false;
    objects.failing = false;
    await t.probeDown();
    expect(t.health).toEqual({ objectStore: "up", index: "up" });
    expect(t.degraded).toBe(false);
  });
});

describe("SharedTier: object-store reads open at once", () => {
  const MiB = 1024 * 1024;

  it("plan up to 4 parts in flight each, fewer as they multiply, never none", () => {
    const inFlight = Array.from({ length: 12 }, (_, openBefore) => partPlanFor(openBefore).partsInFlight);
    expect(inFlight).toEqual([4, 4, 4, 4, 3, 2, 2, 2, 1, 1, 1, 1]);
    expect(partPlanFor(10_000)).toEqual({ partSize: 4 * MiB, partsInFlight: 1 });
  });

  it("each asks the store for as many parts at once as its plan, and a read that ends gives its share back", async () => {
    const objects = new FakeObjects();
    const t = tier(objects, new FakeIndex(), undefined);
    const size = 40 * MiB;
    objects.objects.set(digest.value, { size, mediaType: OCTET_STREAM });
    // Nothing is read from these bodies, so each asks for its first parts and waits.
    const asked: number[] = [];
    const reads: Readable[] = [];
    for (let i = 0; i < 10; i++) {
      const before = objects.gets.length;
      reads.push((await t.open(digest, size)).body);
      asked.push(objects.gets.length - before);
    }
    expect(asked).toEqual([4, 4, 4, 4, 3, 2, 2, 2, 1, 1]);
    for (const body of reads) body.destroy();
    await new Promise((r) => setImmediate(r));
    const before = objects.gets.length;
    const again = (await t.open(digest, size)).body;
    expect(objects.gets.length - before).toBe(4);
    again.destroy();
  });
});
