import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, utimesSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable, Writable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { BlobStore } from "../../../src/cache/blob-store.js";
import { CacheIndex } from "../../../src/cache/cache-index.js";
import { DataDisk } from "../../../src/cache/data-disk.js";
import { DataPaths } from "../../../src/cache/data-paths.js";
import { sendRange } from "../../../src/cache/range-sender.js";
import type { RangeSource } from "../../../src/cache/range-source.js";
import { createLogger } from "../../../src/log/logger.js";
import { parseDigest, type Digest } from "../../../src/oci/digest.js";
import { flipByte } from "../../e2e/harness/cache-files.js";

/** Over the size every lookup hashes whole (blob-store.ts): such files are checked while served, if at all. */
const SIZE = 5 * 1024 * 1024;

/** Sends the whole source to a sink; whether the sink got every byte, or was cut. */
function drain(source: RangeSource, size: number): Promise<{ outcome: "whole" | "cut"; bytes: number }> {
  let bytes = 0;
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      callback();
    },
  });
  return new Promise((resolve) => {
    sink.on("finish", () => resolve({ outcome: "whole", bytes }));
    sink.on("error", () => resolve({ outcome: "cut", bytes }));
    sendRange(source, 0, size - 1, sink);
  });
}

describe("a cached file is hashed while served when it changed on disk since it was verified", () => {
  const dirs: string[] = [];
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  /** A store holding one large blob, filled (so hashed on the way in: verified this run). */
  async function storeWithBlob(): Promise<{ store: BlobStore; digest: Digest; file: string }> {
    const dir = mkdtempSync(path.join(tmpdir(), "regcache-verified-"));
    dirs.push(dir);
    const paths = new DataPaths(dir);
    const logger = createLogger("silent");
    const index = await CacheIndex.open(paths.indexFile, logger);
    cleanups.push(() => index.close());
    const store = new BlobStore(paths, index, { maxBytes: 2 ** 30, maxBlobSize: 2 ** 30, minDownloadRate: 0, abandonedAfterMs: 30_000, verifyIntervalMs: 3_600_000 }, new DataDisk(paths, logger), logger);
    const data = randomBytes(SIZE);
    const digest = parseDigest(`sha256:${createHash("sha256").update(data).digest("hex")}`)!;
    const outcome = await store.fill(digest, "r.test/app", async () => ({ kind: "body", content: "blob", body: Readable.from([data]), size: SIZE, mediaType: "application/octet-stream", host: "r.test" }));
    if (outcome.kind !== "download") throw new Error(`fill: ${outcome.kind}`);
    await outcome.download.done;
    for (let i = 0; i < 100 && !store.lookup(digest); i++) await new Promise((r) => setTimeout(r, 10));
    return { store, digest, file: store.fileOf(digest) };
  }

  const read = (store: BlobStore, digest: Digest): RangeSource => store.readCached(store.lookup(digest)!, digest, 0, SIZE - 1);

  it("a file as it was when verified is served without hashing: every byte is releasable at once", async () => {
    const { store, digest } = await storeWithBlob();
    const source = read(store, digest);
    expect(source.complete).toBe(true);
    expect(await drain(source, SIZE)).toEqual({ outcome: "whole", bytes: SIZE });
  });

  it("a byte flipped in place (same size): the next read holds back its last byte, is cut, and the file is quarantined", async () => {
    const { store, digest, file } = await storeWithBlob();
    flipByte(file, 1_000_000);
    const source = read(store, digest);
    expect(source.complete).toBe(false);
    const got = await drain(source, SIZE);
    expect(got.outcome).toBe("cut");
    expect(got.bytes).toBeLessThan(SIZE);
    for (let i = 0; i < 100 && store.lookup(digest); i++) await new Promise((r) => setTimeout(r, 10));
    expect(store.lookup(digest)).toBeUndefined();
    expect(store.stats.damaged).toBe(1);
  });

  it("a file only touched (its content right) is hashed once, found right, and then served without hashing again", async () => {
    const { store, digest, file } = await storeWithBlob();
    utimesSync(file, new Date(), new Date(Date.now() + 5_000));
    const checked = read(store, digest);
    expect(checked.complete).toBe(false);
    expect(await drain(checked, SIZE)).toEqual({ outcome: "whole", bytes: SIZE });
    const again = read(store, digest);
    expect(again.complete).toBe(true);
    again.close();
    expect(store.stats.damaged).toBe(0);
  });
});
