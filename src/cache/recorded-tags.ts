import { tagKey, type CacheIndex, type TagEntry } from "./cache-index.js";

/**
 * An answer whose manifest is not cached here serves no client of this replica, but a HEAD's
 * answer is recorded before the GET that caches its manifest, and a peer may hold the manifest
 * (cluster.ts hands over tag answers): such answers are kept this long after they were recorded.
 */
const UNCACHED_ANSWER_KEPT_MS = 7 * 24 * 60 * 60_000;

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
    await this.index.putTag(tagKey(tag.host, tag.name, tag.tag, acceptSet), entry);
    await this.index.putTag(anyAcceptKey(tag), entry);
  }

  /** At start: drops the answers past UNCACHED_ANSWER_KEPT_MS whose manifest is not cached; says how many. */
  pruneUncached(now = Date.now()): Promise<number> {
    return this.index.pruneTags((entry) => this.index.getBlob(entry.digest) !== undefined || now - entry.recorded < UNCACHED_ANSWER_KEPT_MS);
  }

  /**
   * An answer another replica recorded from upstream for this Accept set (its second copy): kept
   * for that Accept set and as the latest, each where it is newer than what is held.
   */
  async keepNewer(tag: TagName, acceptSet: readonly string[], entry: TagEntry): Promise<void> {
    for (const key of [tagKey(tag.host, tag.name, tag.tag, acceptSet), anyAcceptKey(tag)]) {
      const held = await this.index.getTag(key);
      if (!held || held.recorded < entry.recorded) await this.index.putTag(key, entry);
    }
  }

  /** A peer's answer, kept for this Accept set only: upstream did not give it to this replica. */
  async adopt(tag: TagName, acceptSet: readonly string[], entry: TagEntry): Promise<void> {
    await this.index.putTag(tagKey(tag.host, tag.name, tag.tag, acceptSet), entry);
  }
}

function anyAcceptKey(tag: TagName): string {
  return tagKey(tag.host, tag.name, tag.tag, ["*"]);
}
