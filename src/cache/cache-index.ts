import { createHash } from "node:crypto";
import KeyvSqlite from "@keyv/sqlite";
import Keyv from "keyv";

export interface BlobEntry {
  digest: string;
  size: number;
  /** Manifests: exactly the Content-Type upstream sent. Blobs: application/octet-stream. */
  mediaType: string;
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
}

export interface TagEntry {
  digest: string;
  mediaType: string;
  size: number;
  recorded: number;
}

const BLOB_PREFIX = "blob:";
const TAG_PREFIX = "tag:";
const META_PREFIX = "meta:";
const MAX_LINKS = 256;
/** Access times are batched: a sqlite write per cache hit would cost more than the hit. */
const FLUSH_INTERVAL_MS = 5_000;

export function tagKey(host: string, name: string, tag: string, acceptSet: readonly string[]): string {
  const accept = createHash("sha256").update(acceptSet.join(",")).digest("hex").slice(0, 16);
  return `${host}/${name}:${tag}@${accept}`;
}

/**
 * The cache index: blob rows and tag answers, persisted through keyv + @keyv/sqlite.
 * Blob rows are also held in memory (they are small and the hot path reads them on
 * every request); sqlite is the durable copy, written through on change.
 */
export class CacheIndex {
  private readonly blobs = new Map<string, BlobEntry>();
  private readonly dirty = new Set<string>();
  private readonly flushTimer: NodeJS.Timeout;
  private totalBytes = 0;

  private constructor(private readonly keyv: Keyv) {
    this.flushTimer = setInterval(() => void this.flush(), FLUSH_INTERVAL_MS);
    this.flushTimer.unref();
  }

  static async open(file: string): Promise<CacheIndex> {
    const store = new KeyvSqlite({ uri: `sqlite://${file}`, table: "regcache", busyTimeout: 10_000, keySize: 1024, iterationLimit: 1000 });
    // WAL lets readers proceed during writes; NORMAL sync is durable across process crashes,
    // and files on disk are re-verified at start-up anyway.
    await store.query("PRAGMA journal_mode=WAL");
    await store.query("PRAGMA synchronous=NORMAL");
    const keyv = new Keyv({ store, namespace: "regcache", throwOnErrors: true });
    const index = new CacheIndex(keyv);
    await index.load();
    return index;
  }

  private async load(): Promise<void> {
    if (!this.keyv.iterator) return;
    for await (const [key, value] of this.keyv.iterator(undefined)) {
      const k = String(key);
      if (k.startsWith(BLOB_PREFIX)) {
        const entry = value as BlobEntry & { seenIn?: string[] };
        // Rows written before links existed named repositories a hit was merely allowed in,
        // not ones upstream confirmed: they start with no links and re-confirm on first use.
        if (!Array.isArray(entry.links)) {
          entry.links = [];
          delete entry.seenIn;
        }
        this.blobs.set(entry.digest, entry);
        this.totalBytes += entry.size;
      }
    }
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

  async putBlob(entry: BlobEntry): Promise<void> {
    const previous = this.blobs.get(entry.digest);
    if (previous) this.totalBytes -= previous.size;
    this.blobs.set(entry.digest, entry);
    this.totalBytes += entry.size;
    await this.keyv.set(BLOB_PREFIX + entry.digest, entry);
  }

  async deleteBlob(digest: string): Promise<void> {
    const previous = this.blobs.get(digest);
    if (previous) this.totalBytes -= previous.size;
    this.blobs.delete(digest);
    this.dirty.delete(digest);
    await this.keyv.delete(BLOB_PREFIX + digest);
  }

  /** Records a hit in memory; persisted by the next flush. */
  touch(digest: string): void {
    const entry = this.blobs.get(digest);
    if (!entry) return;
    entry.lastAccess = Date.now();
    entry.hits += 1;
    this.dirty.add(digest);
  }

  /** Links a cached digest to a repository upstream confirmed it in; persisted by the next flush. */
  link(digest: string, hostRepository: string): void {
    const entry = this.blobs.get(digest);
    if (!entry || !addLink(entry.links, hostRepository)) return;
    this.dirty.add(digest);
  }

  async getTag(key: string): Promise<TagEntry | undefined> {
    return (await this.keyv.get<TagEntry>(TAG_PREFIX + key)) ?? undefined;
  }

  async putTag(key: string, entry: TagEntry): Promise<void> {
    await this.keyv.set(TAG_PREFIX + key, entry);
  }

  /** Small records other parts keep durable (access verdicts, last challenges), under a "meta:" prefix. */
  async getMeta<T>(key: string): Promise<T | undefined> {
    return (await this.keyv.get<T>(META_PREFIX + key)) ?? undefined;
  }

  async putMeta(key: string, value: unknown): Promise<void> {
    await this.keyv.set(META_PREFIX + key, value);
  }

  async flush(): Promise<void> {
    const digests = [...this.dirty];
    this.dirty.clear();
    for (const digest of digests) {
      const entry = this.blobs.get(digest);
      if (entry) await this.keyv.set(BLOB_PREFIX + digest, entry);
    }
  }

  async close(): Promise<void> {
    clearInterval(this.flushTimer);
    await this.flush();
    await this.keyv.disconnect();
  }
}

/** Adds a link (most recent last), dropping the oldest past the bound; false when it was there. */
export function addLink(links: string[], hostRepository: string): boolean {
  if (links.includes(hostRepository)) return false;
  links.push(hostRepository);
  if (links.length > MAX_LINKS) links.shift();
  return true;
}
