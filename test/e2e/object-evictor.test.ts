import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ObjectEvictor } from "../../src/fleet/object-evictor.js";
import { RedisFleetIndex } from "../../src/fleet/redis-fleet-index.js";
import { S3ObjectStore } from "../../src/fleet/s3-object-store.js";
import { createLogger } from "../../src/log/logger.js";
import { parseDigest, type Digest } from "../../src/oci/digest.js";
import { waitFor } from "./harness/ports.js";
import { TestRedis } from "./harness/redis.js";
import { SWIFT_REGION, SWIFT_TOOLS, swiftCredentialsInEnv, TestSwift } from "./harness/swift.js";
import { missingTools } from "./harness/tools.js";

const missing = missingTools(...SWIFT_TOOLS, "redis-server");

const MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const SIZE = 10_000;

/**
 * The fleet's evictor against the real engines: objects in Swift without a row in Redis (uploaded
 * while Redis was down, or before it lost its data) are listed, given a row, counted against the
 * store's bound and evicted in turn.
 */
describe.skipIf(missing.length > 0)("ObjectEvictor against Swift (s3api) and Redis", () => {
  const logger = createLogger(process.env.DEBUG_EVICTOR ? "debug" : "silent");
  const redis = new TestRedis();
  let dir: string;
  let swift: TestSwift;
  let objects: S3ObjectStore;
  let index: RedisFleetIndex;
  const counted = { evicted: 0, reindexed: 0 };
  const events = { evicted: (n: number) => (counted.evicted += n), reindexed: (n: number) => (counted.reindexed += n) };

  /** Uploads a fresh random object, as a replica's upload would; the caller decides whether it gets a row. */
  async function upload(name: string, mediaType = "application/octet-stream"): Promise<Digest> {
    const bytes = randomBytes(SIZE);
    const file = path.join(dir, name);
    writeFileSync(file, bytes);
    const digest = parseDigest(`sha256:${createHash("sha256").update(bytes).digest("hex")}`)!;
    await objects.put(digest, file, SIZE, mediaType);
    return digest;
  }

  let restoreEnv: (() => void) | undefined;

  /**
   * Waits until the store lists `digests` as older than now: Swift's container listing follows
   * writes a moment later, and its s3api rounds Last-Modified up to the next second.
   */
  async function listedInThePast(...digests: Digest[]): Promise<void> {
    await waitFor(
      async () => {
        const listed = new Map<string, number>();
        for await (const o of objects.list()) listed.set(o.digest, o.lastModified);
        return digests.every((d) => (listed.get(d.value) ?? Infinity) < Date.now());
      },
      10_000,
      "the store to list the uploads",
    );
  }

  beforeAll(async () => {
    restoreEnv = swiftCredentialsInEnv();
    dir = mkdtempSync(path.join(tmpdir(), "regcache-evictor-"));
    swift = new TestSwift(path.join(dir, "swift"));
    await Promise.all([swift.start(), redis.start()]);
    objects = new S3ObjectStore(
      { bucket: swift.bucket, prefix: "fleet", endpoint: swift.endpoint, forcePathStyle: true, region: SWIFT_REGION, timeouts: { connectMs: 1_000, requestMs: 5_000, answerMs: 5_000 } },
      logger,
    );
    index = await RedisFleetIndex.open(redis.url, logger);
  });

  afterAll(async () => {
    objects?.close();
    await index?.close();
    await redis.kill();
    await swift?.stop();
    restoreEnv?.();
    if (dir && process.env.REGCACHE_KEEP_TEST_DIRS !== "1") rmSync(dir, { recursive: true, force: true });
  });

  it("gives objects without a row one, a blob's or a manifest's, once per period for the whole fleet, and evicts them first", async () => {
    const orphanBlob = await upload("orphan-blob");
    const orphanManifest = await upload("orphan-manifest", MANIFEST);
    const indexed = await upload("indexed");
    await listedInThePast(orphanBlob, orphanManifest, indexed);
    // Its uploader's row, written after the orphans were stored (the LRU goes by that time).
    await index.putBlob({ digest: indexed.value, size: SIZE, mediaType: "application/octet-stream", links: ["registry.test/app"], storedAt: Date.now() });
    expect(await index.storedBytes()).toBe(SIZE);

    const first = new ObjectEvictor(objects, index, { maxBytes: 100 * SIZE, orphanGraceMs: 0 }, events, logger);
    expect(await first.runOnce()).toBe(0);
    expect(counted.reindexed).toBe(2);
    expect(await index.storedBytes()).toBe(3 * SIZE);
    // A manifest's Content-Type in the store may be one registry's label: its type is learnt where it is served.
    expect(await index.getBlob(orphanManifest.value)).toMatchObject({ size: SIZE, kind: "manifest", mediaType: "", links: [] });
    expect(await index.getBlob(orphanBlob.value)).toMatchObject({ size: SIZE, kind: "blob", mediaType: "application/octet-stream", links: [] });
    // The uploader's row, links included, is left as it was.
    expect((await index.getBlob(indexed.value))?.links).toEqual(["registry.test/app"]);

    // Another replica's round within the hour does not list again.
    const late = await upload("late-orphan");
    await listedInThePast(late);
    const second = new ObjectEvictor(objects, index, { maxBytes: 100 * SIZE, orphanGraceMs: 0 }, events, logger);
    await second.runOnce();
    expect(await index.getBlob(late.value)).toBeUndefined();
    expect(counted.reindexed).toBe(2);

    // Over the bound: the reindexed objects sit in the LRU by when they were stored, before the indexed one.
    const tight = new ObjectEvictor(objects, index, { maxBytes: 2 * SIZE, orphanGraceMs: 0 }, events, logger);
    expect(await tight.runOnce()).toBe(2);
    expect(await objects.head(orphanBlob)).toBeUndefined();
    expect(await objects.head(orphanManifest)).toBeUndefined();
    expect(await index.getBlob(orphanBlob.value)).toBeUndefined();
    expect(await objects.head(indexed)).toMatchObject({ size: SIZE });
    expect(await index.storedBytes()).toBe(SIZE);
  });

  it("leaves young objects to their uploader (whose row may be on its way)", async () => {
    const young = await upload("young");
    await listedInThePast(young);
    const afterIndexLoss = async (orphanGraceMs: number): Promise<number> => {
      // An index that lost its data (no persistence): every object in the store is without a row.
      await index.close();
      await redis.restart();
      index = await RedisFleetIndex.open(redis.url, logger);
      const before = counted.reindexed;
      await new ObjectEvictor(objects, index, { maxBytes: 100 * SIZE, orphanGraceMs }, events, logger).runOnce();
      return counted.reindexed - before;
    };
    let stored = 0;
    for await (const _ of objects.list()) stored += 1;
    // Everything this test run stored is minutes old at most.
    expect(await afterIndexLoss(10 * 60_000)).toBe(0);
    expect(await index.getBlob(young.value)).toBeUndefined();
    // Without the grace the same store gets every row back, this object's included.
    expect(await afterIndexLoss(0)).toBe(stored);
    expect(await index.getBlob(young.value)).toMatchObject({ size: SIZE, links: [] });
    expect(await index.storedBytes()).toBe(stored * SIZE);
  });
});
