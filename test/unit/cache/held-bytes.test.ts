import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, renameSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { BlobStore } from "../../../src/cache/blob-store.js";
import { CacheIndex, type BlobEntry } from "../../../src/cache/cache-index.js";
import { DataDisk } from "../../../src/cache/data-disk.js";
import { DataPaths } from "../../../src/cache/data-paths.js";
import { HeldBytes } from "../../../src/cache/held-bytes.js";
import { sendRange } from "../../../src/cache/range-sender.js";
import type { RangeSource } from "../../../src/cache/range-source.js";
import { createLogger } from "../../../src/log/logger.js";
import { parseDigest, type Digest } from "../../../src/oci/digest.js";

const entryOf = (digest: string, size: number): BlobEntry => ({ digest, size, kind: "manifest", mediaType: "m", created: 0, lastAccess: 0, hits: 0, links: [] });

/** What a client receives of bytes [start, end] of `source`. */
async function received(source: RangeSource, start: number, end: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const sink = new Writable({ write: (chunk: Buffer, _enc, done) => (chunks.push(Buffer.from(chunk)), done()) });
  const finished = new Promise<void>((resolve, reject) => sink.on("finish", resolve).on("error", reject));
  sendRange(source, start, end, sink);
  await finished;
  return Buffer.concat(chunks);
}

describe("HeldBytes", () => {
  it("holds at most maxBytes, letting the least recently used go first, and never a file over maxFileBytes", () => {
    const held = new HeldBytes(100, 40);
    const [a, b, c] = ["a", "b", "c"].map((d) => entryOf(d, 40));
    held.put(a!, Buffer.alloc(40));
    held.put(b!, Buffer.alloc(40));
    expect(held.get(a!)).toBeDefined();
    held.put(c!, Buffer.alloc(40));
    expect(held.get(b!)).toBeUndefined();
    expect(held.get(a!)).toBeDefined();
    expect(held.get(c!)).toBeDefined();
    expect(held.size).toBe(80);
    held.put(entryOf("d", 41), Buffer.alloc(41));
    expect(held.get(entryOf("d", 41))).toBeUndefined();
    expect(held.size).toBe(80);
  });

  it("answers only for the row the bytes were verified for: a replaced row is a miss, and its bytes go", () => {
    const held = new HeldBytes(100, 50);
    const first = entryOf("a", 10);
    held.put(first, Buffer.alloc(10));
    expect(held.get(entryOf("a", 10))).toBeUndefined();
    expect(held.get(first)).toBeUndefined();
    expect(held.size).toBe(0);
  });
});

describe("BlobStore: small files verified once, then answered from memory", () => {
  const dirs: string[] = [];
  const indexes: CacheIndex[] = [];
  afterEach(async () => {
    for (const index of indexes.splice(0)) await index.close();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  async function storeHolding(bytes: Buffer): Promise<{ store: BlobStore; index: CacheIndex; digest: Digest; file: string }> {
    const dir = mkdtempSync(path.join(tmpdir(), "regcache-held-"));
    dirs.push(dir);
    const paths = new DataPaths(dir);
    const logger = createLogger("silent");
    const index = await CacheIndex.open(paths.indexFile, logger);
    indexes.push(index);
    const digest = parseDigest(`sha256:${createHash("sha256").update(bytes).digest("hex")}`)!;
    const file = paths.blobFile(digest);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, bytes);
    await index.putBlob(entryOf(digest.value, bytes.length));
    const store = new BlobStore(paths, index, { maxBytes: 2 ** 30, maxBlobSize: 2 ** 30, minDownloadRate: 0, abandonedAfterMs: 30_000, verifyIntervalMs: 60_000 }, new DataDisk(paths, logger), logger);
    return { store, index, digest, file };
  }

  /** A store whose small file was looked up once: verified, and its bytes held. */
  async function storeHeld(): Promise<{ store: BlobStore; digest: Digest; file: string; entry: BlobEntry; bytes: Buffer }> {
    const bytes = randomBytes(3000);
    const { store, digest, file } = await storeHolding(bytes);
    const entry = store.lookup(digest)!;
    expect(await store.present(entry, digest)).toBe(true);
    return { store, digest, file, entry, bytes };
  }

  /** Another file copied over `file`, as a stray copy or restore would: a new inode, so a new stamp whatever the clock's grain. */
  function replaceFile(file: string, bytes: Buffer): void {
    writeFileSync(`${file}.new`, bytes);
    renameSync(`${file}.new`, file);
  }

  it("serves the verified bytes, whole and ranged: a file damaged after it was looked up is never what the client gets", async () => {
    const { store, digest, file, entry, bytes } = await storeHeld();
    replaceFile(file, Buffer.alloc(bytes.length));
    expect((await received(store.readCached(entry, digest, 0, bytes.length - 1), 0, bytes.length - 1)).equals(bytes)).toBe(true);
    rmSync(file);
    expect((await received(store.readCached(entry, digest, 100, 199), 100, 199)).equals(bytes.subarray(100, 200))).toBe(true);
  });

  it("a held file damaged on disk is caught at its next lookup: hashed again, quarantined, and its bytes let go", async () => {
    const { store, digest, file, entry, bytes } = await storeHeld();
    replaceFile(file, Buffer.alloc(bytes.length));
    expect(await store.present(entry, digest)).toBe(false);
    expect(store.lookup(digest)).toBeUndefined();
    expect(store.stats.damaged).toBe(1);
  });

  it("a held file deleted from disk is caught at its next lookup: its row is dropped", async () => {
    const { store, digest, file, entry } = await storeHeld();
    rmSync(file);
    expect(await store.present(entry, digest)).toBe(false);
    expect(store.lookup(digest)).toBeUndefined();
    expect(store.stats.missing).toBe(1);
  });

  it("a held file only touched (its content right) is hashed again, found right, and still served: nothing quarantined", async () => {
    const { store, digest, file, entry, bytes } = await storeHeld();
    utimesSync(file, new Date(), new Date(Date.now() + 5_000));
    expect(await store.present(entry, digest)).toBe(true);
    expect(store.stats.damaged).toBe(0);
    expect((await received(store.readCached(entry, digest, 0, bytes.length - 1), 0, bytes.length - 1)).equals(bytes)).toBe(true);
  });

  it("a file damaged before it was first verified is quarantined, and nothing of it is held", async () => {
    const bytes = randomBytes(3000);
    const { store, digest, file } = await storeHolding(bytes);
    writeFileSync(file, Buffer.alloc(bytes.length));
    const entry = store.lookup(digest)!;
    expect(await store.present(entry, digest)).toBe(false);
    expect(store.lookup(digest)).toBeUndefined();
    expect(store.stats.damaged).toBe(1);
  });

  it("a removed (evicted) file's bytes do not answer for the row of a later refill", async () => {
    const bytes = randomBytes(3000);
    const { store, index, digest, file } = await storeHolding(bytes);
    const entry = store.lookup(digest)!;
    expect(await store.present(entry, digest)).toBe(true);
    await store.remove(entry);
    // Cached again later (a refill): the old row's bytes do not answer for the new row.
    writeFileSync(file, bytes);
    const refilled = entryOf(digest.value, bytes.length);
    await index.putBlob(refilled);
    rmSync(file);
    expect(await store.present(refilled, digest)).toBe(false);
  });
});
