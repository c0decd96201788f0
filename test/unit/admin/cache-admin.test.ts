import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { CacheAdmin } from "../../../src/admin/cache-admin.js";
import { BlobStore } from "../../../src/cache/blob-store.js";
import { CacheIndex, tagKey } from "../../../src/cache/cache-index.js";
import { DataDisk } from "../../../src/cache/data-disk.js";
import { DataPaths } from "../../../src/cache/data-paths.js";
import { createLogger } from "../../../src/log/logger.js";
import { parseDigest } from "../../../src/oci/digest.js";

const INDEX = "application/vnd.oci.image.index.v1+json";
const MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const sha256 = (data: string): string => `sha256:${createHash("sha256").update(data).digest("hex")}`;

/** A data dir with an index and a store, and a way to cache content and record tag answers in it. */
async function world(dirs: string[]) {
  const dir = mkdtempSync(path.join(tmpdir(), "regcache-admin-"));
  dirs.push(dir);
  const paths = new DataPaths(dir);
  const logger = createLogger("silent");
  const index = await CacheIndex.open(paths.indexFile, logger);
  const store = new BlobStore(paths, index, { maxBytes: 2 ** 30, maxBlobSize: 2 ** 30, minDownloadRate: 0, abandonedAfterMs: 30_000, verifyIntervalMs: 50 }, new DataDisk(paths, logger), logger);
  const file = (digest: string): string => paths.blobFile(parseDigest(digest)!);
  const cache = async (content: string, mediaType = "application/octet-stream"): Promise<string> => {
    const digest = sha256(content);
    mkdirSync(path.dirname(file(digest)), { recursive: true });
    writeFileSync(file(digest), content);
    await index.putBlob({ digest, size: Buffer.byteLength(content), kind: mediaType === "application/octet-stream" ? "blob" : "manifest", mediaType, created: 1, lastAccess: 1_000, hits: 0, links: ["quay.test/team/app"] });
    return digest;
  };
  const manifest = (config: string, layers: string[]): string => JSON.stringify({ schemaVersion: 2, mediaType: MANIFEST, config: { digest: config }, layers: layers.map((digest) => ({ digest })) });
  const tag = async (name: string, tagName: string, digest: string, recorded: number, accept: string[] = ["*"]): Promise<void> => {
    await index.putTag(tagKey("quay.test", name, tagName, accept), { digest, mediaType: MANIFEST, size: 0, recorded });
  };
  return { store, index, admin: new CacheAdmin(store, paths), cache, manifest, tag, file, close: () => index.close() };
}

describe("CacheAdmin", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it("lists a tag once whatever Accept sets it was answered for, with everything its answers lead to", async () => {
    const w = await world(dirs);
    const config = await w.cache("config-a");
    const layer = await w.cache("layer-a-bytes");
    const platform = await w.cache(w.manifest(config, [layer]), MANIFEST);
    const otherPlatform = sha256("never cached");
    const index = await w.cache(JSON.stringify({ schemaVersion: 2, mediaType: INDEX, manifests: [{ digest: platform }, { digest: otherPlatform }] }), INDEX);
    // A client that accepts no index was answered the platform manifest, earlier; the latest answer is the index.
    await w.tag("team/a", "1", platform, 100, [MANIFEST]);
    await w.tag("team/a", "1", index, 200, [INDEX, MANIFEST]);
    await w.tag("team/a", "1", index, 200);
    await w.tag("team/gone", "3", sha256("evicted manifest"), 50);
    w.index.touch(index);

    const images = await w.admin.images();
    expect(images.map((i) => i.image)).toEqual(["quay.test/team/a:1", "quay.test/team/gone:3"]);
    const sizes = [config, layer, platform, index].map((d) => w.index.getBlob(d)!.size);
    expect(images[0]).toMatchObject({ host: "quay.test", repository: "team/a", tag: "1", digest: index, manifestCached: true, cachedDigests: 4, missingDigests: 1, size: sizes.reduce((a, b) => a + b), hits: 1 });
    expect(images[0]!.lastAccess).toBeGreaterThan(1_000);
    expect(images[1]).toMatchObject({ manifestCached: false, size: 0, cachedDigests: 0, missingDigests: 1, lastAccess: null, hits: 0 });
    const blobs = await w.admin.blobs();
    expect(blobs.find((b) => b.digest === layer)).toMatchObject({ kind: "blob", images: ["quay.test/team/a:1"], inUse: false, links: ["quay.test/team/app"], verifiedAt: null });
    expect(blobs.find((b) => b.digest === index)).toMatchObject({ kind: "manifest" });
    await w.close();
  });

  it("removes an image's digests but those another tag names, and forgets the tag", async () => {
    const w = await world(dirs);
    const shared = await w.cache("shared-config");
    const own = await w.cache("own-layer");
    const a = await w.cache(w.manifest(shared, [own]), MANIFEST);
    const b = await w.cache(w.manifest(shared, [await w.cache("b-layer")]), MANIFEST);
    await w.tag("team/a", "1", a, 100, [MANIFEST]);
    await w.tag("team/a", "1", a, 100);
    await w.tag("team/b", "2", b, 100);
    const untagged = await w.cache("pulled by digest");

    expect(await w.admin.removeImage({ host: "quay.test", name: "team/a", tag: "9" })).toBeUndefined();
    const removed = await w.admin.removeImage({ host: "quay.test", name: "team/a", tag: "1" });
    expect(removed).toMatchObject({ image: "quay.test/team/a:1", keptShared: [shared], keptInUse: [] });
    expect(removed!.removed.map((r) => r.digest).sort()).toEqual([a, own].sort());
    expect(removed!.freedBytes).toBe(removed!.removed.reduce((s, r) => s + r.size, 0));
    for (const digest of [a, own]) expect(existsSync(w.file(digest))).toBe(false);
    expect(existsSync(w.file(shared))).toBe(true);
    expect([...(await w.index.allTags()).keys()]).toEqual([tagKey("quay.test", "team/b", "2", ["*"])]);
    expect((await w.admin.blobs()).find((x) => x.digest === untagged)?.images).toEqual([]);
    await w.close();
  });

  it("never removes a digest being read", async () => {
    const w = await world(dirs);
    const layer = await w.cache("being served");
    const manifest = await w.cache(w.manifest(await w.cache("cfg"), [layer]), MANIFEST);
    await w.tag("team/a", "1", manifest, 100);
    const entry = w.index.getBlob(layer)!;
    const reading = w.store.readCached(entry, parseDigest(layer)!, 0, entry.size - 1);
    expect(await w.admin.removeBlob(parseDigest(layer)!)).toEqual({ kind: "in-use" });
    expect((await w.admin.removeImage({ host: "quay.test", name: "team/a", tag: "1" }))?.keptInUse).toEqual([layer]);
    expect(existsSync(w.file(layer))).toBe(true);
    reading.close();
    expect(await w.admin.removeBlob(parseDigest(layer)!)).toEqual({ kind: "removed", removed: { digest: layer, size: entry.size } });
    expect(await w.admin.removeBlob(parseDigest(layer)!)).toEqual({ kind: "not-cached" });
    await w.close();
  });

  it("verify hashes every file: a damaged one is quarantined, a missing one dropped", async () => {
    const w = await world(dirs);
    const intact = await w.cache("intact");
    const damaged = await w.cache("damaged");
    const missing = await w.cache("missing");
    writeFileSync(w.file(damaged), "damagee");
    rmSync(w.file(missing));
    const report = await w.admin.verify();
    expect(report).toMatchObject({ checked: 3, bytes: "intact".length + "damaged".length, damaged: [{ digest: damaged, size: 7 }], missing: [{ digest: missing, size: 7 }] });
    expect(w.index.getBlob(intact)?.verifiedAt).toBeGreaterThan(0);
    expect(w.index.getBlob(damaged)).toBeUndefined();
    expect(w.index.getBlob(missing)).toBeUndefined();
    expect(existsSync(w.file(damaged))).toBe(false);
    await w.close();
  });

  it("the background scrub drops the row of a file that went missing, rather than retrying it forever", async () => {
    const w = await world(dirs);
    const missing = await w.cache("gone behind regcache's back");
    rmSync(w.file(missing));
    w.store.startScrub();
    try {
      await expect.poll(() => w.index.getBlob(missing), { timeout: 2_000 }).toBeUndefined();
      expect(w.store.stats.missing).toBe(1);
    } finally {
      w.store.stopScrub();
    }
    await w.close();
  });
});
