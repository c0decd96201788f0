import { createHash } from "node:crypto";
import { rename, rm, stat } from "node:fs/promises";
import { pathToFileURL } from "node:url";
import KeyvSqlite from "@keyv/sqlite";
import Keyv from "keyv";
import sqlite3 from "sqlite3";
import type { Logger } from "../log/logger.js";
import { recordLinkType, upgradeMediaType } from "./manifest-types.js";
import { newerRecord, type SharedRecords } from "./shared-records.js";

export interface BlobEntry {
  digest: string;
  size: number;
  /** What it was cached as: served only as that (a manifest's digest asked for as a blob is upstream's to answer). */
  kind: "blob" | "manifest";
  /**
   * Blobs: application/octet-stream. Manifests: the type the manifest declares in its mediaType
   * field, or "" when it declares none (then linkTypes says, per repository).
   */
  mediaType: string;
  /**
   * Manifests that declare no type: per "host/repository", the manifest type upstream labelled it
   * with there (registries label the same bytes differently). Served only there.
   */
  linkTypes?: Record<string, string>;
  /** A row from before per-repository types: the Content-Type it kept, until start-up reads the manifest (manifest-types.ts). */
  legacyMediaType?: string;
  created: number;
  lastAccess: number;
  hits: number;
  /**
   * "host/repository" pairs where upstream confirmed this digest (a 200 or redirect to a
   * fetch, or to a HEAD, with the client's own credentials). The content is served from the
   * cache only in these repositories: knowing a digest is not permission to read it.
   * Most recent last; bounded, since a link dropped costs one upstream HEAD to re-confirm.
   */
  links: string[];
  /** When the file last matched its digest (ms since the epoch); absent: never checked since it was indexed. */
  verifiedAt?: number;
}

export interface TagEntry {
  digest: string;
  mediaType: string;
  size: number;
  recorded: number;
}

/** Why the index is not recording durably: sqlite's result code (or "DAMAGED") and message. */
export interface IndexWriteError {
  code: string;
  message: string;
  /** ms since the epoch */
  at: number;
}

/**
 * The data layout: one sqlite table of keyv rows, "regcache:<kind>:<key>" -> {"value": ...}:
 *
 *   regcache:schema              -> SCHEMA_VERSION
 *   regcache:blob:<digest>       -> BlobEntry
 *   regcache:tag:<tagKey>        -> TagEntry
 *   regcache:meta:<kind>:<key>   -> what other parts keep (access verdicts, confirmations, challenges)
 */
const TABLE = "regcache";
const NAMESPACE = "regcache";
const SCHEMA_KEY = "schema";
const BLOB_PREFIX = "blob:";
const TAG_PREFIX = "tag:";
const META_PREFIX = "meta:";
/**
 * 1: no schema row; blob rows may predate links (a "seenIn" list instead).
 * 2: every blob row has links; the schema row says so.
 * 3: every blob row has a kind; a manifest's mediaType is its declared type, linkTypes its labels.
 */
const SCHEMA_VERSION = 3;
const MAX_LINKS = 256;
/** Access times are batched: a sqlite write per cache hit would cost more than the hit. */
const FLUSH_INTERVAL_MS = 5_000;
/** On a full disk every write fails: one warning per kind of failure per minute says it. */
const WARN_EVERY_MS = 60_000;
/**
 * Tag and meta records whose write failed are kept for reading back and retrying; past this
 * many the oldest go (they are hints: a lost one costs an upstream round trip).
 */
const MAX_PENDING_RECORDS = 10_000;
/** sqlite result codes (node-sqlite3 reports the primary one) meaning the file cannot be trusted. */
const DAMAGE_CODES = new Set(["SQLITE_CORRUPT", "SQLITE_NOTADB"]);
/** ...meaning it cannot be created or written here: a full disk, read-only or failing storage. */
const UNWRITABLE_CODES = new Set(["SQLITE_FULL", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_READONLY"]);

export function tagKey(host: string, name: string, tag: string, acceptSet: readonly string[]): string {
  const accept = createHash("sha256").update(acceptSet.join(",")).digest("hex").slice(0, 16);
  return `${host}/${name}:${tag}@${accept}`;
}

/** The host, repository and tag a tagKey was made of (its Accept part is a hash: not reversible); undefined for any other key. */
export function parseTagKey(key: string): { host: string; name: string; tag: string } | undefined {
  const head = key.slice(0, key.lastIndexOf("@"));
  const slash = head.indexOf("/");
  const colon = head.lastIndexOf(":");
  if (slash <= 0 || colon <= slash + 1 || colon === head.length - 1 || head.lastIndexOf("/") > colon) return undefined;
  return { host: head.slice(0, slash), name: head.slice(slash + 1, colon), tag: head.slice(colon + 1) };
}

class DamagedIndexError extends Error {
  readonly code = "DAMAGED";
}

/**
 * The cache index: blob rows and tag answers, persisted through keyv + @keyv/sqlite.
 * Blob rows are also held in memory (they are small and the hot path reads them on
 * every request); sqlite is the durable copy, written through on change.
 *
 * The index is an accelerator, never a reason to stop serving: every file it describes can be
 * re-admitted by hash (recovery.ts). So a damaged index is set aside and replaced at start-up,
 * an unwritable one is replaced by an in-memory copy for the run, and no method rejects: a
 * failed write is logged, kept in memory and retried by the next flush.
 */
export class CacheIndex {
  private readonly dirty = new Set<string>();
  private readonly pendingRecords = new Map<string, unknown>();
  private readonly warnedAt = new Map<string, { at: number; since: number }>();
  private readonly flushTimer: NodeJS.Timeout;
  private flushing: Promise<void> | undefined;
  /** While reopen() moves to a new connection: writes wait in memory. */
  private reopening = false;
  private lastFailure: IndexWriteError | undefined;

  private constructor(
    private readonly file: string,
    private store: KeyvSqlite,
    private keyv: Keyv,
    private readonly blobs: Map<string, BlobEntry>,
    private totalBytes: number,
    private readonly logger: Logger,
    /** Set while this run's index lives in memory only. */
    private volatileCause: IndexWriteError | undefined,
    private readonly shared: SharedRecords | undefined,
  ) {
    this.flushTimer = setInterval(() => void this.flush(), FLUSH_INTERVAL_MS);
    this.flushTimer.unref();
  }

  /** `shared`: the fleet's copy of tag answers and verdicts, written through and read back (shared-records.ts). */
  static async open(file: string, logger: Logger, shared?: SharedRecords): Promise<CacheIndex> {
    let created = (await fileSize(file)) === undefined;
    let failure: unknown;
    try {
      return await CacheIndex.openFile(file, logger, shared);
    } catch (err) {
      failure = err;
    }
    if (isDamage(failure)) {
      const movedTo = await moveAside(file);
      logger.warn(
        { file, movedTo, reason: messageOf(failure) },
        "cache index damaged: moved aside and replaced by an empty one; its tag records and access verdicts are lost, cached files are re-admitted by hash",
      );
      created = true;
      try {
        return await CacheIndex.openFile(file, logger, shared);
      } catch (err) {
        failure = err;
      }
    }
    if (!UNWRITABLE_CODES.has(errorCode(failure))) throw failure;
    // What sqlite began on a disk that refused it is no index: left behind, the next start would take it for a damaged one.
    if (created) await removeIndexFiles(file);
    return CacheIndex.openInMemory(file, created, failure, logger, shared);
  }

  private static async openFile(file: string, logger: Logger, shared: SharedRecords | undefined): Promise<CacheIndex> {
    const { store, keyv } = await CacheIndex.connect(file, logger);
    try {
      const { blobs, bytes } = await loadBlobs(store, keyv);
      return new CacheIndex(file, store, keyv, blobs, bytes, logger, undefined, shared);
    } catch (err) {
      await store.close().catch(() => undefined);
      throw err;
    }
  }

  /** A checked, migrated connection to the index file; rejects (closed) when the file is damaged or cannot be written. */
  private static async connect(file: string, logger: Logger): Promise<{ store: KeyvSqlite; keyv: Keyv }> {
    // sqlite takes an empty file for a new database, but it wrote a header when this one was made: it was truncated.
    const size = await fileSize(file);
    if (size === 0) throw new DamagedIndexError("the file is empty");
    await tryFirst(file, size !== undefined);
    const store = newStore(`sqlite://${file}`);
    try {
      // WAL lets readers proceed during writes; NORMAL sync is durable across process crashes,
      // and files on disk are re-verified at start-up anyway.
      await store.query("PRAGMA journal_mode=WAL");
      await store.query("PRAGMA synchronous=NORMAL");
      // Loading reads every table page; quick_check also walks the key index every lookup uses
      // (and the free list), for about 7 ms per 10k rows with a warm page cache, 60 ms cold.
      const check = (await store.query("PRAGMA quick_check")) as { quick_check: string }[];
      if (check[0]?.quick_check !== "ok") throw new DamagedIndexError(`quick_check: ${check.slice(0, 3).map((r) => r.quick_check).join("; ")}`);
      const keyv = newKeyv(store);
      await migrate(store, keyv, logger);
      return { store, keyv };
    } catch (err) {
      // An open connection would keep the file's locks and shared memory past a rename.
      await store.close().catch(() => undefined);
      throw err;
    }
  }

  private static async openInMemory(file: string, created: boolean, cause: unknown, logger: Logger, shared: SharedRecords | undefined): Promise<CacheIndex> {
    let store = newStore("sqlite://:memory:");
    let rowsRead = 0;
    let unread: string | undefined;
    let loaded: { keyv: Keyv; blobs: Map<string, BlobEntry>; bytes: number };
    const load = async (): Promise<{ keyv: Keyv; blobs: Map<string, BlobEntry>; bytes: number }> => {
      const keyv = newKeyv(store);
      await migrate(store, keyv, logger);
      return { keyv, ...(await loadBlobs(store, keyv)) };
    };
    try {
      if (!created) {
        const rows = await readRowsWithoutWriting(file);
        await insertRows(store, rows);
        rowsRead = rows.length;
      }
      loaded = await load();
    } catch (err) {
      // Unreadable (damaged too, say): start empty, as for a new index; recovery re-admits the files.
      unread = messageOf(err);
      rowsRead = 0;
      await store.close().catch(() => undefined);
      store = newStore("sqlite://:memory:");
      loaded = await load();
    }
    logger.warn(
      { file, reason: messageOf(cause), rowsRead, ...(unread ? { unread } : {}) },
      "cache index cannot be written (disk full or read-only): this run keeps it in memory and loses what it records at exit; the next start re-admits files by hash",
    );
    return new CacheIndex(file, store, loaded.keyv, loaded.blobs, loaded.bytes, logger, indexError(cause), shared);
  }

  /**
   * A new connection to the index file, once its disk takes writes again (data-disk.ts): the old
   * one belongs to a filesystem that turned read-only, and sqlite keeps failing through it. What
   * memory holds is written back: every row of an index that lived in memory, else every blob row
   * (the ones on disk may be older) and the records still pending. Rejects, leaving the index as
   * it was, when the file cannot be opened and written.
   */
  async reopen(): Promise<void> {
    // Writes wait (their rows stay dirty or pending) until the new connection takes them.
    this.reopening = true;
    try {
      await this.flushing;
      const memoryRows = this.volatileCause ? ((await this.store.query(`SELECT key, value FROM ${TABLE}`)) as IndexRow[]) : [];
      let fresh: { store: KeyvSqlite; keyv: Keyv };
      try {
        fresh = await CacheIndex.connect(this.file, this.logger);
      } catch (err) {
        if (!isDamage(err)) throw err;
        const movedTo = await moveAside(this.file);
        this.logger.warn({ file: this.file, movedTo, reason: messageOf(err) }, "cache index damaged: moved aside and replaced; what memory holds is written to the new one");
        fresh = await CacheIndex.connect(this.file, this.logger);
      }
      await insertRows(fresh.store, memoryRows).catch(async (err: unknown) => {
        await fresh.store.close().catch(() => undefined);
        throw err;
      });
      for (const digest of this.blobs.keys()) this.dirty.add(digest);
      const old = this.store;
      this.store = fresh.store;
      this.keyv = fresh.keyv;
      this.volatileCause = undefined;
      this.lastFailure = undefined;
      await old.close().catch(() => undefined);
    } finally {
      this.reopening = false;
    }
    await this.flush();
    this.logger.info({ file: this.file, rows: this.blobs.size }, "cache index reopened on its file");
  }

  /** True while the index cannot record durably: its last write failed, or it lives in memory for this run. */
  get writeFailing(): boolean {
    return this.writeError !== undefined;
  }

  /** Why writeFailing, for readiness and stats; undefined while writes succeed. */
  get writeError(): IndexWriteError | undefined {
    return this.volatileCause ?? this.lastFailure;
  }

  get size(): number {
    return this.totalBytes;
  }

  get count(): number {
    return this.blobs.size;
  }

  getBlob(digest: string): BlobEntry | undefined {
    return this.blobs.get(digest);
  }

  allBlobs(): IterableIterator<BlobEntry> {
    return this.blobs.values();
  }

  /** Never rejects: memory is updated at once, and a row sqlite refuses is retried by the next flush. */
  async putBlob(entry: BlobEntry): Promise<void> {
    const previous = this.blobs.get(entry.digest);
    if (previous) this.totalBytes -= previous.size;
    this.blobs.set(entry.digest, entry);
    this.totalBytes += entry.size;
    await this.persistBlob(entry.digest);
  }

  /** Never rejects, like putBlob. */
  async deleteBlob(digest: string): Promise<void> {
    const previous = this.blobs.get(digest);
    if (previous) this.totalBytes -= previous.size;
    this.blobs.delete(digest);
    await this.persistBlob(digest);
  }

  /** Records a hit in memory; persisted by the next flush. */
  touch(digest: string): void {
    const entry = this.blobs.get(digest);
    if (!entry) return;
    entry.lastAccess = Date.now();
    entry.hits += 1;
    this.dirty.add(digest);
  }

  /** Records that the file matched its digest at `at`; persisted by the next flush. */
  markVerified(digest: string, at: number): void {
    const entry = this.blobs.get(digest);
    if (!entry) return;
    entry.verifiedAt = at;
    this.dirty.add(digest);
  }

  /**
   * Links a cached digest to a repository upstream confirmed it in, with the Content-Type upstream
   * gave it there (kept for a manifest that declares no type); persisted by the next flush.
   */
  link(digest: string, hostRepository: string, contentType?: string): void {
    const entry = this.blobs.get(digest);
    if (!entry) return;
    const linked = addLink(entry.links, hostRepository);
    const typed = recordLinkType(entry, hostRepository, contentType);
    if (linked || typed) this.dirty.add(digest);
  }

  /** Never rejects: an index that cannot be read answers "not recorded". */
  async getTag(key: string): Promise<TagEntry | undefined> {
    return this.getRecord<TagEntry>(TAG_PREFIX + key);
  }

  /** Never rejects, like putBlob. */
  async putTag(key: string, entry: TagEntry): Promise<void> {
    await this.putRecord(TAG_PREFIX + key, entry);
  }

  /**
   * Drops a tag answer. Never rejects: a row sqlite keeps after a failed delete names a manifest
   * that is no longer cached, which tag handling already treats as no usable answer.
   */
  async deleteTag(key: string): Promise<void> {
    this.pendingRecords.delete(TAG_PREFIX + key);
    await this.attempt(() => this.keyv.delete(TAG_PREFIX + key));
  }

  /** Every recorded tag answer by tagKey. Never rejects: when sqlite cannot be read, what it did not yield is left out. */
  async allTags(): Promise<Map<string, TagEntry>> {
    const tags = new Map<string, TagEntry>();
    try {
      for (const [key, value] of await rowsUnder(this.store, this.keyv, TAG_PREFIX)) tags.set(key, value as TagEntry);
    } catch (err) {
      this.warnRateLimited("read", err, "cache index read failed; tag answers listed in part");
    }
    for (const [key, value] of this.pendingRecords) {
      if (key.startsWith(TAG_PREFIX)) tags.set(key.slice(TAG_PREFIX.length), value as TagEntry);
    }
    return tags;
  }

  /** Small records other parts keep durable (access verdicts, last challenges), under a "meta:" prefix. Never rejects. */
  async getMeta<T>(key: string): Promise<T | undefined> {
    return this.getRecord<T>(META_PREFIX + key);
  }

  /** Never rejects, like putBlob. */
  async putMeta(key: string, value: unknown): Promise<void> {
    await this.putRecord(META_PREFIX + key, value);
  }

  /**
   * Deletes the tag answers `keep` refuses (it knows which are of use), in one statement; says
   * how many went. Never rejects: what a failed delete leaves is tried again at the next start.
   */
  async pruneTags(keep: (entry: TagEntry) => boolean): Promise<number> {
    return this.prune(TAG_PREFIX, (_key, value) => keep(value as TagEntry));
  }

  /** Deletes the meta records `keep` refuses, like pruneTags. */
  async pruneMeta(keep: (key: string, value: unknown) => boolean): Promise<number> {
    return this.prune(META_PREFIX, keep);
  }

  /** Writes what sqlite does not have yet. Never rejects: what it refuses waits for the next flush. */
  flush(): Promise<void> {
    this.flushing ??= this.writePending().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  async close(): Promise<void> {
    clearInterval(this.flushTimer);
    await this.flushing;
    await this.flush();
    const unwritten = this.dirty.size + this.pendingRecords.size;
    if (unwritten > 0) this.logger.warn({ unwritten, reason: this.lastFailure?.message }, "cache index rows left unwritten at exit; the next start re-admits their files by hash");
    try {
      await this.keyv.disconnect();
    } catch (err) {
      this.logger.warn({ reason: messageOf(err) }, "cannot close the cache index");
    }
  }

  private async writePending(): Promise<void> {
    // One refusal (a full disk) ends the pass: the other rows would fail the same way.
    for (const digest of [...this.dirty]) {
      if (!(await this.persistBlob(digest))) return;
    }
    for (const [key, value] of [...this.pendingRecords]) {
      if (!(await this.persistRecord(key, value))) return;
    }
  }

  /** Makes sqlite's row for `digest` what memory holds now: that entry, or none. */
  private async persistBlob(digest: string): Promise<boolean> {
    this.dirty.delete(digest);
    const entry = this.blobs.get(digest);
    const written = await this.attempt(() => (entry ? this.keyv.set(BLOB_PREFIX + digest, entry) : this.keyv.delete(BLOB_PREFIX + digest)));
    if (!written) this.dirty.add(digest);
    return written;
  }

  /** `share`: false for a record read from the fleet's copy, which has it already. */
  private async putRecord(key: string, value: unknown, share = true): Promise<void> {
    // Held until sqlite has it, so that reads see it meanwhile; re-inserted so the newest are last.
    this.pendingRecords.delete(key);
    this.pendingRecords.set(key, value);
    if (this.pendingRecords.size > MAX_PENDING_RECORDS) this.pendingRecords.delete(this.pendingRecords.keys().next().value!);
    if (share && this.shared?.shares(key)) this.shared.put(key, value);
    await this.persistRecord(key, value);
  }

  private async persistRecord(key: string, value: unknown): Promise<boolean> {
    const written = await this.attempt(() => this.keyv.set(key, value));
    if (written && this.pendingRecords.get(key) === value) this.pendingRecords.delete(key);
    return written;
  }

  private async prune(prefix: string, keep: (key: string, value: unknown) => boolean): Promise<number> {
    let rows: [string, unknown][];
    try {
      rows = await rowsUnder(this.store, this.keyv, prefix);
    } catch (err) {
      this.warnRateLimited("read", err, "cache index read failed; nothing pruned");
      return 0;
    }
    const gone = rows.filter(([key, value]) => !keep(key, value)).map(([key]) => `${NAMESPACE}:${prefix}${key}`);
    if (gone.length === 0) return 0;
    for (const key of gone) this.pendingRecords.delete(key.slice(NAMESPACE.length + 1));
    const deleted = await this.attempt(() => this.store.query(`DELETE FROM ${TABLE} WHERE key IN (SELECT value FROM json_each(?))`, JSON.stringify(gone)));
    return deleted ? gone.length : 0;
  }

  /**
   * The local record, or the fleet's copy when that is newer (another replica recorded it later).
   * A copy taken from the fleet is kept locally as well (written in the background, readable at
   * once): when the shared index is down later, this replica still answers with what it served.
   */
  private async getRecord<T>(key: string): Promise<T | undefined> {
    const shared = this.shared?.shares(key) ? this.shared.get<T>(key) : undefined;
    const local = await this.getLocalRecord<T>(key);
    const newer = newerRecord(local, await shared);
    if (newer !== undefined && newer !== local) void this.putRecord(key, newer, false);
    return newer;
  }

  private async getLocalRecord<T>(key: string): Promise<T | undefined> {
    if (this.pendingRecords.has(key)) return this.pendingRecords.get(key) as T;
    try {
      return (await this.keyv.get<T>(key)) ?? undefined;
    } catch (err) {
      this.warnRateLimited("read", err, "cache index read failed; answered as not recorded");
      return undefined;
    }
  }

  private async attempt(write: () => Promise<unknown>): Promise<boolean> {
    if (this.reopening) return false;
    try {
      await write();
    } catch (err) {
      this.lastFailure = indexError(err);
      this.warnRateLimited("write", err, "cache index write failed; the rows stay in memory and are retried every 5 s");
      return false;
    }
    if (this.lastFailure) {
      this.logger.info({ reason: this.lastFailure.message, pendingRows: this.dirty.size + this.pendingRecords.size }, "cache index writes succeed again");
      this.lastFailure = undefined;
    }
    return true;
  }

  private warnRateLimited(kind: string, err: unknown, msg: string): void {
    const key = `${kind}:${errorCode(err)}`;
    const now = Date.now();
    const last = this.warnedAt.get(key);
    if (last && now - last.at < WARN_EVERY_MS) {
      last.since += 1;
      return;
    }
    this.warnedAt.set(key, { at: now, since: 0 });
    this.logger.warn({ code: errorCode(err), reason: messageOf(err), pendingRows: this.dirty.size + this.pendingRecords.size, repeatsSinceLastWarning: last?.since ?? 0 }, msg);
  }
}

/** Adds a link (most recent last), dropping the oldest past the bound; false when it was there. */
export function addLink(links: string[], hostRepository: string): boolean {
  if (links.includes(hostRepository)) return false;
  links.push(hostRepository);
  if (links.length > MAX_LINKS) links.shift();
  return true;
}

interface IndexRow {
  key: string;
  value: string;
}

/** Writes raw rows (key and serialized value) in one statement, replacing rows of the same key. */
async function insertRows(store: KeyvSqlite, rows: IndexRow[]): Promise<void> {
  if (rows.length === 0) return;
  await store.query(
    `INSERT OR REPLACE INTO ${TABLE} (key, value) SELECT json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]') FROM json_each(?) AS j`,
    JSON.stringify(rows.map((r) => [r.key, r.value])),
  );
}

const KEY_SIZE = 1024;

function newStore(uri: string): KeyvSqlite {
  return new KeyvSqlite({ uri, table: TABLE, busyTimeout: 10_000, keySize: KEY_SIZE, iterationLimit: 1000 });
}

/**
 * What makes @keyv/sqlite fail as it connects, tried first on a connection closed whatever
 * happens: @keyv/sqlite never closes a connection whose table it could not create, and a file
 * removed under an open connection keeps its space until the collector happens to close it (on
 * a full disk, its last free pages). A new index: its table is created (a full disk fails here).
 * An existing one: read without writing and without its WAL, which a connection closing would
 * fold into the file (a file that is no database fails here).
 */
function tryFirst(file: string, exists: boolean): Promise<void> {
  const [name, mode, sql] = exists
    ? [`${pathToFileURL(file).href}?immutable=1`, sqlite3.OPEN_READONLY | sqlite3.OPEN_URI, "SELECT count(*) FROM sqlite_master"]
    : [file, sqlite3.OPEN_READWRITE | sqlite3.OPEN_CREATE, `CREATE TABLE IF NOT EXISTS ${TABLE}(key VARCHAR(${KEY_SIZE}) PRIMARY KEY, value TEXT )`];
  return new Promise((resolve, reject) => {
    const db = new sqlite3.Database(name, mode, (openErr) => {
      if (openErr) reject(openErr);
      else db.run(sql, (err) => db.close(() => (err ? reject(err) : resolve())));
    });
  });
}

function newKeyv(store: KeyvSqlite): Keyv {
  return new Keyv({ store, namespace: NAMESPACE, throwOnErrors: true });
}

/**
 * The rows under a key prefix, keys without it, as one range on the key index. keyv's own
 * iterator pages with LIKE ... LIMIT/OFFSET, which reads the table again for every page:
 * quadratic in the rows, and it would read every tag and meta row to find the blob rows.
 */
async function rowsUnder(store: KeyvSqlite, keyv: Keyv, prefix: string): Promise<[string, unknown][]> {
  const from = `${NAMESPACE}:${prefix}`;
  const to = `${from.slice(0, -1)}${String.fromCharCode(from.charCodeAt(from.length - 1) + 1)}`;
  const rows = (await store.query(`SELECT key, value FROM ${TABLE} WHERE key >= ? AND key < ?`, from, to)) as { key: string; value: string }[];
  const out: [string, unknown][] = [];
  try {
    for (const row of rows) out.push([row.key.slice(from.length), (await keyv.deserializeData<unknown>(row.value))?.value]);
  } catch (err) {
    // sqlite checks pages, not the JSON inside a row: a damaged value only shows here.
    if (err instanceof SyntaxError) throw new DamagedIndexError(`a row is not JSON: ${err.message}`);
    throw err;
  }
  return out;
}

async function loadBlobs(store: KeyvSqlite, keyv: Keyv): Promise<{ blobs: Map<string, BlobEntry>; bytes: number }> {
  const blobs = new Map<string, BlobEntry>();
  let bytes = 0;
  for (const [, value] of await rowsUnder(store, keyv, BLOB_PREFIX)) {
    const entry = value as BlobEntry;
    blobs.set(entry.digest, entry);
    bytes += entry.size;
  }
  return { blobs, bytes };
}

/**
 * Brings the rows to SCHEMA_VERSION, at start, before anything reads them. An index written by
 * a newer regcache (a downgrade) is set aside like a damaged one: recovery re-admits its files.
 */
async function migrate(store: KeyvSqlite, keyv: Keyv, logger: Logger): Promise<void> {
  const stored = await keyv.get<number>(SCHEMA_KEY);
  if (stored === SCHEMA_VERSION) return;
  if (stored === undefined && ((await store.query(`SELECT key FROM ${TABLE} LIMIT 1`)) as unknown[]).length === 0) {
    await keyv.set(SCHEMA_KEY, SCHEMA_VERSION);
    return;
  }
  const found = stored ?? 1;
  if (found > SCHEMA_VERSION) throw new DamagedIndexError(`written by a newer regcache (schema ${found}; this one reads ${SCHEMA_VERSION})`);
  let rewritten = 0;
  for (const [key, value] of await rowsUnder(store, keyv, BLOB_PREFIX)) {
    const entry = value as BlobEntry & { seenIn?: string[] };
    const linked = Array.isArray(entry.links);
    // Rows written before links existed named repositories a hit was merely allowed in,
    // not ones upstream confirmed: they start with no links and re-confirm on first use.
    if (!linked) {
      entry.links = [];
      delete entry.seenIn;
    }
    // Rows written before kinds kept upstream's first Content-Type, whatever the manifest declares.
    const untyped = entry.kind === undefined;
    if (untyped) upgradeMediaType(entry);
    if (linked && !untyped) continue;
    await keyv.set(BLOB_PREFIX + key, entry);
    rewritten += 1;
  }
  await keyv.set(SCHEMA_KEY, SCHEMA_VERSION);
  logger.info({ from: found, to: SCHEMA_VERSION, rowsRewritten: rewritten }, "cache index schema migrated");
}

/**
 * Every row of an index that cannot be written, read with SQLite's immutable flag: no lock,
 * no -shm and no WAL, which a full disk refuses to create. Rows only in an uncheckpointed WAL
 * are missed; recovery re-admits their files by hash.
 */
function readRowsWithoutWriting(file: string): Promise<IndexRow[]> {
  return new Promise((resolve, reject) => {
    const db = new sqlite3.Database(`${pathToFileURL(file).href}?immutable=1`, sqlite3.OPEN_READONLY | sqlite3.OPEN_URI, (openErr) => {
      if (openErr) {
        reject(openErr);
        return;
      }
      db.all<{ key: string; value: string }>(`SELECT key, value FROM ${TABLE}`, (err, rows) => {
        db.close();
        if (err) reject(err);
        else resolve(rows);
      });
    });
  });
}

/** Moves the index and its -wal and -shm aside as <file>.corrupt-<time>, for inspection. */
async function moveAside(file: string): Promise<string> {
  const target = `${file}.corrupt-${new Date().toISOString()}`;
  for (const suffix of ["", "-wal", "-shm"]) {
    await rename(file + suffix, target + suffix).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") throw err;
    });
  }
  return target;
}

async function removeIndexFiles(file: string): Promise<void> {
  for (const suffix of ["", "-wal", "-shm"]) await rm(file + suffix, { force: true });
}

async function fileSize(file: string): Promise<number | undefined> {
  try {
    return (await stat(file)).size;
  } catch {
    return undefined;
  }
}

function errorCode(err: unknown): string {
  return String((err as { code?: unknown } | undefined)?.code ?? "UNKNOWN");
}

function isDamage(err: unknown): boolean {
  return err instanceof DamagedIndexError || DAMAGE_CODES.has(errorCode(err));
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function indexError(err: unknown): IndexWriteError {
  return { code: errorCode(err), message: messageOf(err), at: Date.now() };
}
