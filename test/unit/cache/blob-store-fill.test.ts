import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { BlobStore } from "../../../src/cache/blob-store.js";
import { CacheIndex } from "../../../src/cache/cache-index.js";
import { DataDisk } from "../../../src/cache/data-disk.js";
import { DataPaths } from "../../../src/cache/data-paths.js";
import { createLogger } from "../../../src/log/logger.js";
import { parseDigest } from "../../../src/oci/digest.js";
import { mountTmpfs, tmpfsUnavailable, unmountTmpfs } from "../../e2e/harness/tmpfs.js";

const digestOf = (data: Buffer) => parseDigest(`sha256:${createHash("sha256").update(data).digest("hex")}`)!;

describe("BlobStore.fill", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it("a cache file that cannot be made is the disk's fault, not the client's: the body streams through uncached and the disk reads as unwritable", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "regcache-fill-"));
    dirs.push(dir);
    const paths = new DataPaths(dir);
    const logger = createLogger("silent");
    const index = await CacheIndex.open(paths.indexFile, logger);
    // A file where the temp directory belongs: mkdir fails as on a broken disk, whoever runs the test.
    writeFileSync(paths.tmpDir, "not a directory");
    const disk = new DataDisk(paths, logger);
    const store = new BlobStore(paths, index, { maxBytes: 2 ** 30, maxBlobSize: 2 ** 30, minDownloadRate: 0, abandonedAfterMs: 30_000, verifyIntervalMs: 60_000 }, disk, logger);
    const body = Readable.from([Buffer.from("x")]);
    const digest = parseDigest(`sha256:${"0".repeat(64)}`)!;
    try {
      const outcome = await store.fill(digest, "r.test/app", async () => ({ kind: "body", content: "blob", body, size: 1, mediaType: "application/octet-stream", host: "r.test" }));
      expect(outcome).toMatchObject({ kind: "uncached", reason: "disk-fault", body, size: 1 });
      expect(body.destroyed).toBe(false);
      expect(disk.fault).toMatchObject({ action: "create a cache file", code: "EEXIST" });
      expect(store.stats.uncachedForDiskFault).toBe(1);
      // While the disk is unwritable, the next fill does not try it.
      const next = Readable.from([Buffer.from("y")]);
      expect(await store.fill(parseDigest(`sha256:${"1".repeat(64)}`)!, "r.test/app", async () => ({ kind: "body", content: "blob", body: next, size: 1, mediaType: "application/octet-stream", host: "r.test" }))).toMatchObject({ kind: "uncached", reason: "disk-fault" });
    } finally {
      disk.stop();
      await index.close();
    }
  });
});

describe.skipIf(tmpfsUnavailable())("BlobStore.fill on a small disk", () => {
  it("a body of undeclared size fills only the free space: it is cut when the disk is full, evicts nothing, and its next fill streams through", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "regcache-small-"));
    mountTmpfs(dir, 48 * 1024 * 1024);
    const paths = new DataPaths(path.join(dir, "data"));
    mkdirSync(paths.root);
    const logger = createLogger("silent");
    const index = await CacheIndex.open(paths.indexFile, logger);
    const disk = new DataDisk(paths, logger);
    const store = new BlobStore(paths, index, { maxBytes: 2 ** 30, maxBlobSize: 2 ** 30, minDownloadRate: 0, abandonedAfterMs: 30_000, verifyIntervalMs: 60_000 }, disk, logger);
    const body = (data: Buffer, size: number | undefined) => async () => ({ kind: "body" as const, content: "blob" as const, body: Readable.from([data]), size, mediaType: "application/octet-stream", host: "r.test" });
    try {
      for (let i = 0; i < 2; i++) {
        const data = randomBytes(1024 * 1024);
        const outcome = await store.fill(digestOf(data), "r.test/app", body(data, data.length));
        expect(outcome.kind, outcome.kind === "uncached" ? outcome.reason : "").toBe("download");
        if (outcome.kind === "download") await outcome.download.done;
      }
      expect(index.count).toBe(2);
      const endless = parseDigest(`sha256:${"e".repeat(64)}`)!;
      const chunks = async function* () {
        for (;;) yield randomBytes(1024 * 1024);
      };
      const open = async () => ({ kind: "body" as const, content: "blob" as const, body: Readable.from(chunks()), size: undefined, mediaType: "application/octet-stream", host: "r.test" });
      const first = await store.fill(endless, "r.test/app", open);
      expect(first.kind).toBe("download");
      if (first.kind === "download") await expect(first.download.done).rejects.toThrow("the cache disk is full and upstream did not declare the size");
      expect(index.count).toBe(2);
      expect(store.stats.evictions).toBe(0);
      const next = await store.fill(endless, "r.test/app", open);
      expect(next).toMatchObject({ kind: "uncached", reason: "no-space" });
      if (next.kind === "uncached") next.body.destroy();
    } finally {
      store.stopScrub();
      disk.stop();
      await index.close();
      unmountTmpfs(dir);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
