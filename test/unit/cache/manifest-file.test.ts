import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { PassThrough, Readable } from "node:stream";
import KeyvSqlite from "@keyv/sqlite";
import Keyv from "keyv";
import { afterEach, describe, expect, it } from "vitest";
import { BlobStore } from "../../../src/cache/blob-store.js";
import { CacheIndex } from "../../../src/cache/cache-index.js";
import { DataDisk } from "../../../src/cache/data-disk.js";
import { DataPaths } from "../../../src/cache/data-paths.js";
import { recoverDataDir } from "../../../src/cache/recovery.js";
import { createLogger } from "../../../src/log/logger.js";
import { parseDigest, type Digest } from "../../../src/oci/digest.js";

const OCI = "application/vnd.oci.image.manifest.v1+json";
const DOCKER = "application/vnd.docker.distribution.manifest.v2+json";
const declared = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI, config: {}, layers: [] }));
const undeclared = Buffer.from(JSON.stringify({ schemaVersion: 2, config: {}, layers: [] }));
const digestOf = (bytes: Buffer): Digest => parseDigest(`sha256:${createHash("sha256").update(bytes).digest("hex")}`)!;

describe("manifest types in the store", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
  const fresh = (): DataPaths => {
    const dir = mkdtempSync(path.join(tmpdir(), "regcache-manifest-types-"));
    dirs.push(dir);
    return new DataPaths(dir);
  };
  const disks: DataDisk[] = [];
  afterEach(() => {
    for (const disk of disks.splice(0)) disk.stop();
  });
  const store = (paths: DataPaths, index: CacheIndex): BlobStore => {
    const logger = createLogger("silent");
    const disk = new DataDisk(paths, logger);
    disks.push(disk);
    return new BlobStore(paths, index, { maxBytes: 2 ** 30, maxBlobSize: 2 ** 30, minDownloadRate: 0, abandonedAfterMs: 30_000, verifyIntervalMs: 60_000 }, disk, logger);
  };
  const fill = async (s: BlobStore, bytes: Buffer, hostRepository: string, contentType: string, body: Readable = Readable.from([bytes])) => {
    const outcome = await s.fill(digestOf(bytes), hostRepository, async () => ({ kind: "body", content: "manifest", body, size: bytes.length, mediaType: contentType, host: "a.test" }));
    if (outcome.kind !== "download") throw new Error(`no download: ${outcome.kind}`);
    return outcome.download;
  };

  it("a filled manifest keeps what it declares, whatever its Content-Type (a text/plain first fill does not poison it)", async () => {
    const paths = fresh();
    const index = await CacheIndex.open(paths.indexFile, createLogger("silent"));
    const s = store(paths, index);
    const entry = await s.whenStored(await fill(s, declared, "a.test/x", "text/plain"));
    expect(entry).toMatchObject({ kind: "manifest", mediaType: OCI, links: ["a.test/x"] });
    expect(entry?.linkTypes).toBeUndefined();
    await index.close();
  });

  it("a manifest that declares no type keeps each repository's label, from the fill and from confirmations while it runs", async () => {
    const paths = fresh();
    const index = await CacheIndex.open(paths.indexFile, createLogger("silent"));
    const s = store(paths, index);
    const body = new PassThrough();
    const download = await fill(s, undeclared, "a.test/x", DOCKER, body);
    s.link(download.digest, "b.test/x", OCI);
    s.link(download.digest, "c.test/x", "text/plain");
    body.end(undeclared);
    expect(await s.whenStored(download)).toMatchObject({ kind: "manifest", mediaType: "", links: ["a.test/x", "b.test/x", "c.test/x"], linkTypes: { "a.test/x": DOCKER, "b.test/x": OCI } });
    s.link(download.digest, "c.test/x", OCI);
    await index.close();
    const reopened = await CacheIndex.open(paths.indexFile, createLogger("silent"));
    expect(reopened.getBlob(download.digest.value)?.linkTypes).toEqual({ "a.test/x": DOCKER, "b.test/x": OCI, "c.test/x": OCI });
    await reopened.close();
  });

  it("a download whose bytes do not match its digest is counted as a digest mismatch, and nothing is stored", async () => {
    const paths = fresh();
    const index = await CacheIndex.open(paths.indexFile, createLogger("silent"));
    const s = store(paths, index);
    const wrong = Buffer.from(declared.toString().replace("2", "3"));
    const outcome = await s.fill(digestOf(declared), "a.test/x", async () => ({ kind: "body", content: "manifest", body: Readable.from([wrong]), size: wrong.length, mediaType: OCI, host: "a.test" }));
    expect(outcome.kind).toBe("download");
    expect(await s.whenStored((outcome as { download: Parameters<BlobStore["whenStored"]>[0] }).download)).toBeUndefined();
    expect(s.stats.digestMismatches).toBe(1);
    expect(s.lookup(digestOf(declared))).toBeUndefined();
    await index.close();
  });

  it("rows from schema 2 get their types from the manifests at start: declared, or the old label for the repository that cached them", async () => {
    const paths = fresh();
    const raw = new Keyv({ store: new KeyvSqlite({ uri: `sqlite://${paths.indexFile}`, table: "regcache", keySize: 1024 }), namespace: "regcache" });
    await raw.set("schema", 2);
    for (const [bytes, label] of [[declared, DOCKER], [undeclared, DOCKER]] as const) {
      const digest = digestOf(bytes);
      mkdirSync(path.dirname(paths.blobFile(digest)), { recursive: true });
      writeFileSync(paths.blobFile(digest), bytes);
      await raw.set(`blob:${digest.value}`, { digest: digest.value, size: bytes.length, mediaType: label, created: 0, lastAccess: 0, hits: 0, links: ["a.test/x", "b.test/x"] });
    }
    await raw.disconnect();
    const logger = createLogger("silent");
    const index = await CacheIndex.open(paths.indexFile, logger);
    await recoverDataDir(paths, index, logger);
    expect(index.getBlob(digestOf(declared).value)).toMatchObject({ kind: "manifest", mediaType: OCI });
    expect(index.getBlob(digestOf(undeclared).value)).toMatchObject({ kind: "manifest", mediaType: "", linkTypes: { "a.test/x": DOCKER } });
    for (const digest of [digestOf(declared), digestOf(undeclared)]) expect(index.getBlob(digest.value)).not.toHaveProperty("legacyMediaType");
    await index.close();
  });
});
