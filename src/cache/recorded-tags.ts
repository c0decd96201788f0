import { LruMap } from "../util/lru-map.js";
import { tagKey, type CacheIndex, type TagEntry } from "./cache-index.js";

/**
 * An answer whose manifest is not cached here serves no client of this replica, but a HEAD's
 * answer is recorded before the GET that caches its manifest, and a peer may hold the manifest
 * (cluster.ts hands over tag answers): such answers are kept this long after they were recorded.
 */
const UNCACHED_ANSWER_KEPT_MS = 7 * 24 * 60 * 60_000;
/**
 * An answer the same as one written under its key less than this long ago is not written again:
 * with --tag-ttl 0 every request for a tag is answered anew, and two index rows written per
 * request cost more than the rest of the answer (bench/small-requests.ts). A record left up to
 * this much older than the latest answer can only expire sooner under --tag-ttl; a tag forgotten
 * meanwhile (`regcache cache rm`) is recorded again by the first answer after it.
 */
const REWRITE_SAME_AFTER_MS = 1_000;
/** Keys whose last write is remembered; one forgotten costs one more write. */
const REMEMBERED_WRITES = 10_000;

export interface TagName {
  host: string;
  name: string;
  tag: string;
}

/**
 * The answers upstream gave for tags, per Accept set, and the latest one whatever the Accept
 * set: a stale answer for a client whose Accept set differs from the one that warmed the cache
 * (its manifest is still served only if its media type is acceptable to that client).
 */
export class RecordedTags {
  private readonly lastWritten = new LruMap<string, TagEntry>(REMEMBERED_WRITES);

  constructor(private readonly index: CacheIndex) {}

  /** The answer recorded for this Accept set. */
  forAccept(tag: TagName, acceptSet: readonly string[]): Promise<TagEntry | undefined> {
    return this.index.getTag(tagKey(tag.host, tag.name, tag.tag, acceptSet));
  }

  /** The latest answer whatever the Accept set. */
  latest(tag: TagName): Promise<TagEntry | undefined> {
    return this.index.getTag(anyAcceptKey(tag));
  }

  /** An answer upstream just gave: for its Accept set, and as the latest. */
  async record(tag: TagName, acceptSet: readonly string[], entry: TagEntry): Promise<void> {
    await this.write(tagKey(tag.host, tag.name, tag.tag, acceptSet), entry);
    await this.write(anyAcceptKey(tag), entry);
  }

  private async write(key: string, entry: TagEntry): Promise<void> {
    const last = this.lastWritten.get(key);
    if (last && last.digest === entry.digest && last.mediaType === entry.mediaType && last.size === entry.size && entry.recorded - last.recorded < REWRITE_SAME_AFTER_MS) return;
    this.lastWritten.set(key, entry);
    await this.index.putTag(key, entry);
  }

  /** At start: drops the answers past UNCACHED_ANSWER_KEPT_MS whose manifest is not cached; says how many. */
  pruneUncached(now = Date.now()): Promise<number> {
    return this.index.pruneTags((entry) => this.index.getBlob(entry.digest) !== undefined || now - entry.recorded < UNCACHED_ANSWER_KEPT_MS);
  }

  /**
   * An answer another replica recorded from upstream for this Accept set (its second copy): kept
   * for that Accept set and as the latest, each where it is newer than what is held. A key it
   * overwrites is written again by this replica's next answer, even one the same as its last.
   */
  async keepNewer(tag: TagName, acceptSet: readonly string[], entry: TagEntry): Promise<void> {
    for (const key of [tagKey(tag.host, tag.name, tag.tag, acceptSet), anyAcceptKey(tag)]) {
      const held = await this.index.getTag(key);
      if (held && held.recorded >= entry.recorded) continue;
      this.lastWritten.delete(key);
      await this.index.putTag(key, entry);
    }
  }

  /** A peer's answer, kept for this Accept set only: upstream did not give it to this replica. */
  async adopt(tag: TagName, acceptSet: readonly string[], entry: TagEntry): Promise<void> {
    await this.write(tagKey(tag.host, tag.name, tag.tag, acceptSet), entry);
  }
}

function anyAcceptKey(tag: TagName): string {
  return tagKey(tag.host, tag.name, tag.tag, ["*"]);
}
