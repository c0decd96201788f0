import { tagKey, type CacheIndex, type TagEntry } from "./cache-index.js";

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
export class TagRecords {
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

  /** A peer's answer, kept for this Accept set only: upstream did not give it to this replica. */
  async adopt(tag: TagName, acceptSet: readonly string[], entry: TagEntry): Promise<void> {
    await this.index.putTag(tagKey(tag.host, tag.name, tag.tag, acceptSet), entry);
  }
}

function anyAcceptKey(tag: TagName): string {
  return tagKey(tag.host, tag.name, tag.tag, ["*"]);
}
