import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { BlobStore } from "../../../src/cache/blob-store.js";
import { CacheIndex } from "../../../src/cache/cache-index.js";
import { DataPaths } from "../../../src/cache/data-paths.js";
import { createLogger } from "../../../src/log/logger.js";
import { parseDigest } from "../../../src/oci/digest.js";

describe("BlobStore.fill", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it("a cache file that cannot be made is CACHE_IO, the cache's own fault, and the body is let go", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "regcache-fill-"));
    dirs.push(dir);
    const paths = new DataPaths(dir);
    const logger = createLogger("silent");
    const index = await CacheIndex.open(paths.indexFile, logger);
    // A file where the temp directory belongs: mkdir fails as on a broken disk, whoever runs the test.
    writeFileSync(paths.tmpDir, "not a directory");
    const store = new BlobStore(paths, index, { maxBytes: 2 ** 30, maxBlobSize: 2 ** 30, minDownloadRate: 0, abandonedAfterMs: 30_000, verifyIntervalMs: 60_000 }, logger);
    const body = Readable.from([Buffer.from("x")]);
    const digest = parseDigest(`sha256:${"0".repeat(64)}`)!;
    try {
      await expect(store.fill(digest, "r.test/app", async () => ({ kind: "body", content: "blob", body, size: 1, mediaType: "application/octet-stream", host: "r.test" }))).rejects.toMatchObject({ code: "CACHE_IO" });
      expect(body.destroyed).toBe(true);
    } finally {
      await index.close();
    }
  });
});
