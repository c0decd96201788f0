import { execFileSync } from "node:child_process";
import { randomBytes, randomFillSync } from "node:crypto";
import { copyFileSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync, writeSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import KeyvSqlite from "@keyv/sqlite";
import Keyv from "keyv";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { CacheIndex, type BlobEntry, type TagEntry } from "../../../src/cache/cache-index.js";
import type { SharedRecords } from "../../../src/cache/shared-records.js";
import { createLogger } from "../../../src/log/logger.js";
import { fillDisk, mountTmpfs, tmpfsUnavailable, unmountTmpfs } from "../../e2e/harness/tmpfs.js";

const DIGEST = `sha256:${"a".repeat(64)}`;
const row = (links: string[]): BlobEntry => ({ digest: DIGEST, size: 10, kind: "blob", mediaType: "application/octet-stream", created: 1, lastAccess: 1, hits: 0, links });
const blob = (i: number): BlobEntry => ({ ...row(["quay.test/team/app"]), digest: `sha256:${i.toString(16).padStart(64, "0")}`, size: 1000 + i });
const TAG: TagEntry = { digest: DIGEST, mediaType: "application/vnd.oci.image.manifest.v1+json", size: 10, recorded: 1 };

interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

function captureLogger(): { logger: ReturnType<typeof createLogger>; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = createLogger("debug", { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
  return { logger, lines };
}

const quiet = (): ReturnType<typeof createLogger> => captureLogger().logger;

/** Index file paths in fresh directories, removed after each test of the calling describe block. */
function freshIndexFiles(): () => string {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
  return () => {
    const dir = mkdtempSync(path.join(tmpdir(), "regcache-index-"));
    dirs.push(dir);
    return path.join(dir, "index.sqlite");
  };
}

describe("CacheIndex repository links", () => {
  const fresh = freshIndexFiles();

  it("persist with the blob row across a restart, and go with it", async () => {
    const file = fresh();
    const index = await CacheIndex.open(file, quiet());
    await index.putBlob(row(["quay.test/team/app"]));
    index.link(DIGEST, "open.test/lib/app");
    await index.close();
    const reopened = await CacheIndex.open(file, quiet());
    expect(reopened.getBlob(DIGEST)?.links).toEqual(["quay.test/team/app", "open.test/lib/app"]);
    await reopened.deleteBlob(DIGEST);
    await reopened.close();
    const third = await CacheIndex.open(file, quiet());
    expect(third.getBlob(DIGEST)).toBeUndefined();
    await third.close();
  });

  it("are not invented for a digest that is not cached", async () => {
    const index = await CacheIndex.open(fresh(), quiet());
    index.link(DIGEST, "quay.test/team/app");
    expect(index.getBlob(DIGEST)).toBeUndefined();
    await index.close();
  });

  it("start empty for rows written before links existed: their repositories were never confirmed", async () => {
    const file = fresh();
    const store = new KeyvSqlite({ uri: `sqlite://${file}`, table: "regcache" });
    const legacy = new Keyv({ store, namespace: "regcache" });
    const { links: _links, ...old } = row([]);
    await legacy.set(`blob:${DIGEST}`, { ...old, seenIn: ["quay.test/public/app", "quay.test/corp/secret"] });
    await legacy.disconnect();
    const index = await CacheIndex.open(file, quiet());
    expect(index.getBlob(DIGEST)?.links).toEqual([]);
    expect(index.getBlob(DIGEST)).not.toHaveProperty("seenIn");
    await index.close();
  });
});

describe("CacheIndex schema", () => {
  const fresh = freshIndexFiles();
  const rawKeyv = (file: string): Keyv => new Keyv({ store: new KeyvSqlite({ uri: `sqlite://${file}`, table: "regcache", keySize: 1024 }), namespace: "regcache" });

  it("migrates an index without a schema row once, and says so", async () => {
    const file = fresh();
    const legacy = rawKeyv(file);
    await legacy.set(`blob:${DIGEST}`, { ...row([]), links: undefined });
    await legacy.set("tag:quay.test/team/app:1.0@x", TAG);
    await legacy.disconnect();
    const first = captureLogger();
    await (await CacheIndex.open(file, first.logger)).close();
    expect(first.lines.filter((l) => l.msg === "cache index schema migrated")).toEqual([expect.objectContaining({ from: 1, to: 3, rowsRewritten: 1 })]);
    const check = rawKeyv(file);
    expect(await check.get("schema")).toBe(3);
    expect(await check.get(`blob:${DIGEST}`)).toMatchObject({ links: [], kind: "blob" });
    await check.disconnect();
    const second = captureLogger();
    const index = await CacheIndex.open(file, second.logger);
    expect(await index.getTag("quay.test/team/app:1.0@x")).toEqual(TAG);
    await index.close();
    expect(second.lines.filter((l) => l.msg === "cache index schema migrated")).toEqual([]);
  });

  it("migrates schema 2's rows: blobs stay blobs, a manifest's one Content-Type is set aside until its own type is read", async () => {
    const file = fresh();
    const v2 = rawKeyv(file);
    const manifestDigest = `sha256:${"c".repeat(64)}`;
    const { kind: _kind, ...blobRow } = row(["quay.test/team/app"]);
    await v2.set("schema", 2);
    await v2.set(`blob:${DIGEST}`, blobRow);
    await v2.set(`blob:${manifestDigest}`, { ...blobRow, digest: manifestDigest, mediaType: "application/vnd.docker.distribution.manifest.v2+json" });
    await v2.disconnect();
    const { logger, lines } = captureLogger();
    const index = await CacheIndex.open(file, logger);
    expect(index.getBlob(DIGEST)).toMatchObject({ kind: "blob", mediaType: "application/octet-stream", links: ["quay.test/team/app"] });
    expect(index.getBlob(DIGEST)).not.toHaveProperty("legacyMediaType");
    expect(index.getBlob(manifestDigest)).toMatchObject({ kind: "manifest", mediaType: "", legacyMediaType: "application/vnd.docker.distribution.manifest.v2+json", links: ["quay.test/team/app"] });
    await index.close();
    expect(lines.filter((l) => l.msg === "cache index schema migrated")).toEqual([expect.objectContaining({ from: 2, to: 3, rowsRewritten: 2 })]);
  });

  it("sets an index from a newer regcache aside, as it cannot know what its rows mean", async () => {
    const file = fresh();
    const newer = rawKeyv(file);
    await newer.set("schema", 99);
    await newer.set(`blob:${DIGEST}`, row([]));
    await newer.disconnect();
    const { logger, lines } = captureLogger();
    const index = await CacheIndex.open(file, logger);
    expect(index.count).toBe(0);
    await index.close();
    expect(String(lines.find((l) => l.msg.startsWith("cache index damaged"))?.reason)).toContain("newer regcache (schema 99");
    expect(readdirSync(path.dirname(file)).some((f) => f.startsWith("index.sqlite.corrupt-"))).toBe(true);
  });

  it("prunes the tag answers and meta records it is told are of no use, and keeps the rest", async () => {
    const file = fresh();
    const index = await CacheIndex.open(file, quiet());
    await index.putBlob(row([]));
    await index.putTag("quay.test/a:cached@x", TAG);
    await index.putTag("quay.test/a:gone@x", { ...TAG, digest: `sha256:${"b".repeat(64)}` });
    await index.putMeta("auth:k:quay.test/a", 1);
    await index.putMeta("auth:k:quay.test/b", 2_000);
    await index.putMeta("public:quay.test/a", { isPublic: true, checkedAt: 1 });
    expect(await index.pruneTags((entry) => index.getBlob(entry.digest) !== undefined)).toBe(1);
    expect(await index.pruneMeta((key, value) => !key.startsWith("auth:") || (value as number) > 1_000)).toBe(1);
    await index.close();
    const reopened = await CacheIndex.open(file, quiet());
    expect([...(await reopened.allTags()).keys()]).toEqual(["quay.test/a:cached@x"]);
    expect(await reopened.getMeta("auth:k:quay.test/a")).toBeUndefined();
    expect(await reopened.getMeta("auth:k:quay.test/b")).toBe(2_000);
    expect(await reopened.getMeta("public:quay.test/a")).toEqual({ isPublic: true, checkedAt: 1 });
    expect(reopened.count).toBe(1);
    await reopened.close();
  });

  it("loads blob rows without reading tag or meta rows", async () => {
    const file = fresh();
    const index = await CacheIndex.open(file, quiet());
    await index.putBlob(row([]));
    await index.close();
    // A tag row that is not JSON: loading would reject it as damage if it read it.
    const store = new KeyvSqlite({ uri: `sqlite://${file}`, table: "regcache", keySize: 1024 });
    await store.set("regcache:tag:quay.test/a:1@x", '{"value":');
    await store.disconnect();
    const reopened = await CacheIndex.open(file, quiet());
    expect(reopened.count).toBe(1);
    await reopened.close();
  });
});

/** An index of 300 blob rows and a tag record, closed (checkpointed: no -wal left). */
async function populatedIndex(file: string): Promise<void> {
  const { logger, lines } = captureLogger();
  const index = await CacheIndex.open(file, logger);
  for (let i = 0; i < 300; i++) await index.putBlob(blob(i));
  await index.putTag("quay.test/team/app:1.0@x", TAG);
  await index.close();
  expect(lines.filter((l) => l.level >= 40)).toEqual([]);
}

/** Overwrites bytes of a file in place. */
function overwrite(file: string, offset: number, bytes: Buffer): void {
  const fd = openSync(file, "r+");
  writeSync(fd, bytes, 0, bytes.length, offset);
  closeSync(fd);
}

/**
 * SQLite's WAL checksum (wal.c, walChecksumBytes): 32-bit words in the byte order the magic
 * names, summed in pairs, each sum carrying into the next.
 */
function walChecksum(data: Buffer, bigEndian: boolean, s: [number, number]): [number, number] {
  let [s0, s1] = s;
  for (let i = 0; i < data.length; i += 8) {
    const a = bigEndian ? data.readUInt32BE(i) : data.readUInt32LE(i);
    const b = bigEndian ? data.readUInt32BE(i + 4) : data.readUInt32LE(i + 4);
    s0 = (s0 + a + s1) >>> 0;
    s1 = (s1 + b + s0) >>> 0;
  }
  return [s0, s1];
}

/**
 * Replaces every page a WAL holds with random bytes and re-signs each frame, so that sqlite
 * takes them for committed pages: what storage that corrupts a file's content looks like.
 */
function scrambleWalPages(wal: string): void {
  const buf = readFileSync(wal);
  const bigEndian = buf.readUInt32BE(0) === 0x377f0683;
  const pageSize = buf.readUInt32BE(8);
  let sums: [number, number] = [buf.readUInt32BE(24), buf.readUInt32BE(28)];
  let frames = 0;
  for (let off = 32; off + 24 + pageSize <= buf.length; off += 24 + pageSize) {
    randomFillSync(buf, off + 24, pageSize);
    sums = walChecksum(buf.subarray(off, off + 8), bigEndian, sums);
    sums = walChecksum(buf.subarray(off + 24, off + 24 + pageSize), bigEndian, sums);
    buf.writeUInt32BE(sums[0], off + 16);
    buf.writeUInt32BE(sums[1], off + 20);
    frames += 1;
  }
  expect(frames).toBeGreaterThan(0);
  writeFileSync(wal, buf);
}

/** The index file and its -wal as a kill -9 leaves them: rows written since the last checkpoint live in the WAL. */
async function crashedIndex(file: string): Promise<void> {
  const scratch = `${file}.live`;
  const store = new KeyvSqlite({ uri: `sqlite://${scratch}`, table: "regcache", keySize: 1024 });
  await store.query("PRAGMA journal_mode=WAL");
  const keyv = new Keyv({ store, namespace: "regcache" });
  for (let i = 0; i < 20; i++) await keyv.set(`blob:${blob(i).digest}`, blob(i));
  copyFileSync(scratch, file);
  copyFileSync(`${scratch}-wal`, `${file}-wal`);
  await keyv.disconnect();
  rmSync(scratch, { force: true });
}

describe("CacheIndex.open on a damaged index", () => {
  let dir: string;
  let file: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), "regcache-damaged-"));
  });
  afterEach(() => {
    for (const name of readdirSync(dir)) rmSync(path.join(dir, name), { force: true });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Opens the damaged index and checks what every damage must give: a working, empty index and the old one kept aside. */
  async function expectReplaced(damagedBytes: Buffer, wal?: Buffer): Promise<LogLine> {
    const { logger, lines } = captureLogger();
    const index = await CacheIndex.open(file, logger);
    expect(index.count).toBe(0);
    expect(await index.getTag("quay.test/team/app:1.0@x")).toBeUndefined();
    expect(index.writeFailing).toBe(false);
    const warning = lines.find((l) => l.level === 40 && l.msg.includes("cache index damaged"));
    expect(warning, JSON.stringify(lines)).toBeDefined();
    expect(warning!.msg).toContain("tag records and access verdicts are lost");
    const aside = readdirSync(dir).filter((n) => n.startsWith("index.sqlite.corrupt-"));
    expect(aside).toContain(path.basename(String(warning!.movedTo)));
    expect(readFileSync(String(warning!.movedTo)).equals(damagedBytes)).toBe(true);
    if (wal) expect(readFileSync(`${String(warning!.movedTo)}-wal`).equals(wal)).toBe(true);
    // The fresh index records and keeps what it is given.
    await index.putBlob(row([]));
    await index.close();
    const reopened = await CacheIndex.open(file, quiet());
    expect(reopened.count).toBe(1);
    await reopened.close();
    return warning!;
  }

  const setUp = async (): Promise<void> => {
    file = path.join(dir, "index.sqlite");
    await populatedIndex(file);
  };

  it("truncated to half", async () => {
    await setUp();
    truncateSync(file, Math.floor(statSync(file).size / 2));
    await expectReplaced(readFileSync(file));
  });

  it("overwritten with random bytes", async () => {
    await setUp();
    writeFileSync(file, randomBytes(statSync(file).size));
    await expectReplaced(readFileSync(file));
  });

  it("replaced with garbage text", async () => {
    await setUp();
    writeFileSync(file, "this is not a database\n".repeat(500));
    await expectReplaced(readFileSync(file));
  });

  it("zero length: sqlite would take it for a new database, but a header was written when it was made", async () => {
    await setUp();
    truncateSync(file, 0);
    await expectReplaced(Buffer.alloc(0));
  });

  it("a -wal whose committed pages are damaged goes aside with it", async () => {
    file = path.join(dir, "index.sqlite");
    await crashedIndex(file);
    scrambleWalPages(`${file}-wal`);
    await expectReplaced(readFileSync(file), readFileSync(`${file}-wal`));
  });

  it("a row whose value is not JSON (sqlite checks pages, not values)", async () => {
    await setUp();
    const store = new KeyvSqlite({ uri: `sqlite://${file}`, table: "regcache", keySize: 1024 });
    await store.set(`regcache:blob:${DIGEST}`, '{"value":{"digest":');
    await store.disconnect();
    await expectReplaced(readFileSync(file));
  });

  it("a damaged key index: quick_check finds it before anything is read", async () => {
    await setUp();
    const store = new KeyvSqlite({ uri: `sqlite://${file}`, table: "regcache", keySize: 1024 });
    const [{ rootpage }] = (await store.query("SELECT rootpage FROM sqlite_master WHERE type = 'index'")) as { rootpage: number }[];
    const [{ page_size: pageSize }] = (await store.query("PRAGMA page_size")) as { page_size: number }[];
    await store.disconnect();
    overwrite(file, (rootpage - 1) * pageSize, randomBytes(pageSize));
    const warning = await expectReplaced(readFileSync(file));
    expect(String(warning.reason)).toMatch(/quick_check|malformed/);
  });

  it("a -wal of garbage is no damage: sqlite ignores a WAL whose header does not verify, and every row stays", async () => {
    await setUp();
    writeFileSync(`${file}-wal`, randomBytes(64 * 1024));
    const { logger, lines } = captureLogger();
    const index = await CacheIndex.open(file, logger);
    expect(index.count).toBe(300);
    expect(await index.getTag("quay.test/team/app:1.0@x")).toEqual(TAG);
    expect(lines.filter((l) => l.level >= 40)).toEqual([]);
    await index.close();
  });
});

describe.skipIf(tmpfsUnavailable())("CacheIndex on a full disk", () => {
  let dir: string;
  let file: string;
  // A disk per test: @keyv/sqlite leaves open a connection whose table it could not create (the
  // collector closes it later), and a file of one test removed under it would free its space in
  // the middle of another's full disk.
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), "regcache-full-index-"));
    mountTmpfs(dir, 16 * 1024 * 1024);
    file = path.join(dir, "index.sqlite");
  });
  afterEach(() => {
    unmountTmpfs(dir);
    rmSync(dir, { recursive: true, force: true });
  });

  it("never rejects a write: the rows stay in memory, one warning per minute, written once space is back", async () => {
    const { logger, lines } = captureLogger();
    const index = await CacheIndex.open(file, logger);
    await index.putBlob(row([]));
    for (let i = 0; i < 20; i++) await index.putBlob(blob(i));
    const filler = fillDisk(dir);

    index.touch(DIGEST);
    await index.flush();
    expect(index.writeFailing).toBe(true);
    expect(index.writeError?.code).toBe("SQLITE_FULL");
    await expect(index.putTag("quay.test/team/app:1.0@x", TAG)).resolves.toBeUndefined();
    await expect(index.putMeta("challenge:quay.test", "Basic realm=x")).resolves.toBeUndefined();
    await expect(index.deleteBlob(blob(0).digest)).resolves.toBeUndefined();
    await expect(index.putBlob(blob(100))).resolves.toBeUndefined();
    index.touch(DIGEST);
    await index.flush();
    // Read back from memory meanwhile.
    expect(await index.getTag("quay.test/team/app:1.0@x")).toEqual(TAG);
    expect(await index.getMeta("challenge:quay.test")).toBe("Basic realm=x");
    const warnings = lines.filter((l) => l.msg.startsWith("cache index write failed"));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ level: 40, code: "SQLITE_FULL" });

    rmSync(filler);
    await index.flush();
    expect(index.writeFailing).toBe(false);
    expect(lines.some((l) => l.msg === "cache index writes succeed again")).toBe(true);
    await index.close();

    const reopened = await CacheIndex.open(file, quiet());
    expect(reopened.getBlob(DIGEST)?.hits).toBe(2);
    expect(reopened.getBlob(blob(0).digest)).toBeUndefined();
    expect(reopened.getBlob(blob(100).digest)).toBeDefined();
    expect(await reopened.getTag("quay.test/team/app:1.0@x")).toEqual(TAG);
    expect(await reopened.getMeta("challenge:quay.test")).toBe("Basic realm=x");
    await reopened.close();
  });

  it("opens from an in-memory copy of the rows when sqlite cannot write the disk, and leaves the file as it was", async () => {
    await populatedIndex(file);
    const before = readFileSync(file);
    const filler = fillDisk(dir);
    const { logger, lines } = captureLogger();
    const index = await CacheIndex.open(file, logger);
    expect(index.count).toBe(300);
    expect(await index.getTag("quay.test/team/app:1.0@x")).toEqual(TAG);
    expect(index.writeFailing).toBe(true);
    const warning = lines.find((l) => l.msg.startsWith("cache index cannot be written"));
    // 300 blob rows, the tag answer and the schema row.
    expect(warning).toMatchObject({ level: 40, rowsRead: 302 });
    await index.putBlob(row([]));
    expect(index.getBlob(DIGEST)).toBeDefined();
    await index.close();

    rmSync(filler);
    expect(readFileSync(file).equals(before)).toBe(true);
    const reopened = await CacheIndex.open(file, quiet());
    expect(reopened.count).toBe(300);
    expect(reopened.writeFailing).toBe(false);
    await reopened.close();
  });

  it("a damaged index on a full disk: set aside, and this run's index in memory", async () => {
    writeFileSync(file, "this is not a database\n".repeat(500));
    fillDisk(dir);
    const { logger, lines } = captureLogger();
    const index = await CacheIndex.open(file, logger);
    expect(index.count).toBe(0);
    expect(index.writeFailing).toBe(true);
    expect(lines.map((l) => l.msg)).toEqual([expect.stringContaining("cache index damaged"), expect.stringContaining("cache index cannot be written")]);
    await index.close();
    expect(existsSync(file)).toBe(false);
  });

  it("starts empty in memory on a full disk that has no index yet, and leaves no empty file to be taken for a damaged one", async () => {
    const filler = fillDisk(dir);
    const index = await CacheIndex.open(file, quiet());
    expect(index.count).toBe(0);
    expect(index.writeFailing).toBe(true);
    await index.close();
    expect(readdirSync(dir)).toEqual([path.basename(filler)]);
    expect(existsSync(file)).toBe(false);
  });
});

describe("CacheIndex.reopen (its disk writable again)", () => {
  const nextFile = freshIndexFiles();

  it("a file damaged meanwhile is set aside like at start-up, and what memory holds goes into a new one", async () => {
    const file = nextFile();
    const { logger, lines } = captureLogger();
    const index = await CacheIndex.open(file, logger);
    await index.putBlob(blob(3));
    await index.flush();
    writeFileSync(file, "regcache index? no: garbage\n".repeat(400));
    await index.reopen();
    expect(lines.some((l) => l.msg.startsWith("cache index damaged: moved aside and replaced"))).toBe(true);
    await index.close();
    const again = await CacheIndex.open(file, quiet());
    expect([...again.allBlobs()].map((b) => b.digest)).toEqual([blob(3).digest]);
    await again.close();
  });
});

describe.skipIf(tmpfsUnavailable())("CacheIndex.reopen after a read-only spell", () => {
  let dir: string;
  const remount = (mode: "ro" | "rw"): void => void execFileSync("mount", ["-o", `remount,${mode}`, dir]);
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), "regcache-index-ro-"));
    mountTmpfs(dir, 8 * 1024 * 1024);
  });
  afterAll(() => {
    unmountTmpfs(dir);
    rmSync(dir, { recursive: true, force: true });
  });

  it("an index kept in memory moves onto its file with every row, and loses no record written while it moves", async () => {
    const file = path.join(dir, "index.sqlite");
    const before = await CacheIndex.open(file, quiet());
    await before.putBlob(blob(1));
    await before.close();
    remount("ro");
    const index = await CacheIndex.open(file, quiet());
    expect(index.writeFailing).toBe(true);
    await index.putTag("quay.test/team/app:v1@x", TAG);
    remount("rw");
    const reopened = index.reopen();
    // Written while the connection changes hands: kept in memory and written by the new one.
    await index.putTag("quay.test/team/app:v2@x", { ...TAG, recorded: 2 });
    await index.putBlob(blob(2));
    await reopened;
    expect(index.writeFailing).toBe(false);
    await index.close();
    const again = await CacheIndex.open(file, quiet());
    expect([...again.allBlobs()].map((b) => b.digest).sort()).toEqual([blob(1).digest, blob(2).digest].sort());
    expect(await again.getTag("quay.test/team/app:v1@x")).toEqual(TAG);
    expect(await again.getTag("quay.test/team/app:v2@x")).toEqual({ ...TAG, recorded: 2 });
    await again.close();
  });
});

describe("CacheIndex with the fleet's shared records", () => {
  const fresh = freshIndexFiles();

  /** The fleet's copy as a map; `down` makes it answer nothing, as FleetRecords does while Redis is away. */
  function fleet(): SharedRecords & { rows: Map<string, unknown>; down: boolean; puts: string[] } {
    const rows = new Map<string, unknown>();
    const puts: string[] = [];
    return {
      rows,
      puts,
      down: false,
      shares: (key) => key.startsWith("tag:") || key.startsWith("meta:public:"),
      async get<T>(key: string) {
        return this.down ? undefined : (rows.get(key) as T | undefined);
      },
      put(key, value) {
        puts.push(key);
        rows.set(key, value);
      },
    };
  }

  it("a tag answer and a verdict read from the fleet are kept locally, without writing them back: once the fleet is down, and after a restart, they are still there", async () => {
    const file = fresh();
    const shared = fleet();
    shared.rows.set("tag:quay.test/app:v1@x", { ...TAG, recorded: 5 });
    shared.rows.set("meta:public:quay.test/app", { isPublic: true, checkedAt: 7 });
    const index = await CacheIndex.open(file, quiet(), shared);
    expect(await index.getTag("quay.test/app:v1@x")).toEqual({ ...TAG, recorded: 5 });
    expect(await index.getMeta("public:quay.test/app")).toEqual({ isPublic: true, checkedAt: 7 });
    expect(shared.puts).toEqual([]);
    shared.down = true;
    expect(await index.getTag("quay.test/app:v1@x")).toEqual({ ...TAG, recorded: 5 });
    await index.close();
    const reopened = await CacheIndex.open(file, quiet(), shared);
    expect(await reopened.getTag("quay.test/app:v1@x")).toEqual({ ...TAG, recorded: 5 });
    expect(await reopened.getMeta("public:quay.test/app")).toEqual({ isPublic: true, checkedAt: 7 });
    await reopened.close();
  });

  it("a newer answer in the fleet replaces the local one; an older one leaves it", async () => {
    const shared = fleet();
    const index = await CacheIndex.open(fresh(), quiet(), shared);
    await index.putTag("quay.test/app:v1@x", { ...TAG, recorded: 10 });
    shared.rows.set("tag:quay.test/app:v1@x", { ...TAG, digest: "sha256:newer", recorded: 20 });
    expect((await index.getTag("quay.test/app:v1@x"))?.digest).toBe("sha256:newer");
    shared.rows.set("tag:quay.test/app:v1@x", { ...TAG, digest: "sha256:older", recorded: 15 });
    expect((await index.getTag("quay.test/app:v1@x"))?.digest).toBe("sha256:newer");
    shared.down = true;
    expect((await index.getTag("quay.test/app:v1@x"))?.digest).toBe("sha256:newer");
    await index.close();
  });
});
