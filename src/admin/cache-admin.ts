import { readFile } from "node:fs/promises";
import type { BlobStore } from "../cache/blob-store.js";
import { parseTagKey, type TagEntry } from "../cache/cache-index.js";
import type { DataPaths } from "../cache/data-paths.js";
import { parseDigest, type Digest } from "../oci/digest.js";
import { formatTaggedImage, manifestReferences, type ManifestReferences, type TaggedImage } from "./cache-references.js";

/** The distribution spec's cap on a manifest: a bigger cached file is a blob, not read as JSON. */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export interface CachedImage {
  /** host/repository:tag */
  image: string;
  host: string;
  repository: string;
  tag: string;
  /** The manifest (or index) the tag named in its latest answer. */
  digest: string;
  mediaType: string;
  /** When upstream gave that answer (ms since the epoch). */
  recorded: number;
  manifestCached: boolean;
  /** Bytes cached for the tag: the manifests its answers named and the blobs those name, each once. */
  size: number;
  /** Of the digests those name, how many are cached, and how many not (other platforms, or evicted). */
  cachedDigests: number;
  missingDigests: number;
  /** The latest use of any of its cached digests; null when none is cached. */
  lastAccess: number | null;
  /** Times its manifest was served from the cache. */
  hits: number;
}

export interface CachedBlob {
  digest: string;
  size: number;
  kind: "blob" | "manifest";
  /** A manifest's declared type; "" when it declares none (then linkTypes). */
  mediaType: string;
  /** A manifest that declares no type: the type each repository's upstream labels it with. */
  linkTypes?: Record<string, string>;
  /** "host/repository" pairs it may be served in. */
  links: string[];
  created: number;
  lastAccess: number;
  hits: number;
  verifiedAt: number | null;
  /** Being read or written now: cannot be removed. */
  inUse: boolean;
  /** Cached tags that name it; none: untagged (pulled by digest, or left behind by a tag that moved). */
  images: string[];
}

export interface RemovedDigest {
  digest: string;
  size: number;
}

export interface RemovedImage {
  image: string;
  removed: RemovedDigest[];
  freedBytes: number;
  /** Also named by another cached tag. */
  keptShared: string[];
  /** Being read or written: left in place. */
  keptInUse: string[];
}

export type RemoveBlobOutcome = { kind: "removed"; removed: RemovedDigest } | { kind: "not-cached" } | { kind: "in-use" };

export interface VerifyReport {
  checked: number;
  /** Bytes hashed. */
  bytes: number;
  /** Did not match their digest: quarantined, refetched on the next request. */
  damaged: RemovedDigest[];
  /** Gone or resized behind regcache's back: dropped from the index. */
  missing: RemovedDigest[];
  durationMs: number;
}

/** A tag's answers (one per Accept set seen) and every digest they lead to. */
interface TagRecords {
  image: TaggedImage;
  keys: string[];
  latest: TagEntry;
  /** The manifests its answers named (a tag names another manifest per Accept set, and after it moved). */
  named: Set<string>;
  digests: Set<string>;
}

/**
 * What the cache holds, by tag and by digest, and the operator's purges and checks. Tags come from
 * the tag answers the index recorded: a tag is known only once a client asked for it through
 * regcache. An image's blobs are found by reading its cached manifests.
 */
export class CacheAdmin {
  private verifying: Promise<VerifyReport> | undefined;

  constructor(
    private readonly store: BlobStore,
    private readonly paths: DataPaths,
  ) {}

  async images(): Promise<CachedImage[]> {
    const images: CachedImage[] = [];
    for (const records of (await this.tagRecords()).values()) {
      const cached = [...records.digests].flatMap((d) => this.store.index.getBlob(d) ?? []);
      const manifest = this.store.index.getBlob(records.latest.digest);
      images.push({
        image: formatTaggedImage(records.image),
        host: records.image.host,
        repository: records.image.name,
        tag: records.image.tag,
        digest: records.latest.digest,
        mediaType: records.latest.mediaType,
        recorded: records.latest.recorded,
        manifestCached: manifest !== undefined,
        size: cached.reduce((sum, e) => sum + e.size, 0),
        cachedDigests: cached.length,
        missingDigests: records.digests.size - cached.length,
        lastAccess: cached.length > 0 ? Math.max(...cached.map((e) => e.lastAccess)) : null,
        hits: manifest?.hits ?? 0,
      });
    }
    return images.sort((a, b) => a.image.localeCompare(b.image));
  }

  async blobs(): Promise<CachedBlob[]> {
    const namedBy = new Map<string, string[]>();
    for (const [image, records] of await this.tagRecords()) {
      for (const digest of records.digests) namedBy.set(digest, [...(namedBy.get(digest) ?? []), image]);
    }
    return [...this.store.index.allBlobs()]
      .map((e) => ({
        digest: e.digest,
        size: e.size,
        kind: e.kind,
        mediaType: e.mediaType,
        ...(e.linkTypes ? { linkTypes: { ...e.linkTypes } } : {}),
        links: [...e.links],
        created: e.created,
        lastAccess: e.lastAccess,
        hits: e.hits,
        verifiedAt: e.verifiedAt ?? null,
        inUse: this.store.isInUse(e.digest),
        images: namedBy.get(e.digest) ?? [],
      }))
      .sort((a, b) => b.size - a.size || a.digest.localeCompare(b.digest));
  }

  /**
   * Removes what the tag's answers lead to, except digests another cached tag also leads to and
   * digests in use, and forgets the tag. Undefined when no answer for the tag is recorded.
   */
  async removeImage(image: TaggedImage): Promise<RemovedImage | undefined> {
    const all = await this.tagRecords();
    const name = formatTaggedImage(image);
    const target = all.get(name);
    if (!target) return undefined;
    const shared = new Set<string>();
    for (const [other, records] of all) if (other !== name) for (const digest of records.digests) shared.add(digest);
    const result: RemovedImage = { image: name, removed: [], freedBytes: 0, keptShared: [], keptInUse: [] };
    for (const digest of target.digests) {
      const entry = this.store.index.getBlob(digest);
      if (!entry) continue;
      if (shared.has(digest)) result.keptShared.push(digest);
      else if (this.store.isInUse(digest)) result.keptInUse.push(digest);
      else {
        await this.store.remove(entry);
        result.removed.push({ digest, size: entry.size });
        result.freedBytes += entry.size;
      }
    }
    for (const key of target.keys) await this.store.index.deleteTag(key);
    return result;
  }

  async removeBlob(digest: Digest): Promise<RemoveBlobOutcome> {
    const entry = this.store.index.getBlob(digest.value);
    if (!entry) return { kind: "not-cached" };
    if (this.store.isInUse(digest.value)) return { kind: "in-use" };
    await this.store.remove(entry);
    return { kind: "removed", removed: { digest: digest.value, size: entry.size } };
  }

  /** Hashes every cached file now; a request made while a check runs gets that check's report. */
  verify(): Promise<VerifyReport> {
    this.verifying ??= this.verifyAll().finally(() => {
      this.verifying = undefined;
    });
    return this.verifying;
  }

  private async verifyAll(): Promise<VerifyReport> {
    const started = performance.now();
    const report: VerifyReport = { checked: 0, bytes: 0, damaged: [], missing: [], durationMs: 0 };
    for (const entry of [...this.store.index.allBlobs()]) {
      const digest = parseDigest(entry.digest);
      // Evicted or removed since the walk began: nothing left to check.
      if (!digest || this.store.index.getBlob(entry.digest) !== entry) continue;
      const outcome = await this.store.verify(entry, digest);
      report.checked += 1;
      if (outcome !== "missing") report.bytes += entry.size;
      if (outcome !== "ok") report[outcome].push({ digest: entry.digest, size: entry.size });
    }
    report.durationMs = Math.round(performance.now() - started);
    return report;
  }

  /** Tag answers grouped by host/repository:tag, each with the digests its answers lead to. */
  private async tagRecords(): Promise<Map<string, TagRecords>> {
    const byImage = new Map<string, TagRecords>();
    for (const [key, entry] of await this.store.index.allTags()) {
      const image = parseTagKey(key);
      if (!image || !parseDigest(entry.digest)) continue;
      const name = formatTaggedImage(image);
      const records = byImage.get(name);
      if (!records) byImage.set(name, { image, keys: [key], latest: entry, named: new Set([entry.digest]), digests: new Set() });
      else {
        records.keys.push(key);
        records.named.add(entry.digest);
        if (entry.recorded > records.latest.recorded) records.latest = entry;
      }
    }
    const read = new Map<string, Promise<ManifestReferences | undefined>>();
    const references = (digest: string): Promise<ManifestReferences | undefined> => {
      let refs = read.get(digest);
      if (!refs) read.set(digest, (refs = this.readReferences(digest)));
      return refs;
    };
    for (const records of byImage.values()) {
      for (const top of records.named) await this.collect(top, references, records.digests);
    }
    return byImage;
  }

  /** Adds `top` and what it names to `into`: an index's manifests and their blobs, one level down. */
  private async collect(top: string, references: (digest: string) => Promise<ManifestReferences | undefined>, into: Set<string>): Promise<void> {
    into.add(top);
    const refs = await references(top);
    for (const blob of refs?.blobs ?? []) into.add(blob);
    for (const child of refs?.manifests ?? []) {
      into.add(child);
      for (const blob of (await references(child))?.blobs ?? []) into.add(blob);
    }
  }

  /** What a cached manifest names; undefined when it is not cached, too big for a manifest, or not JSON. */
  private async readReferences(digest: string): Promise<ManifestReferences | undefined> {
    const entry = this.store.index.getBlob(digest);
    const parsed = parseDigest(digest);
    if (!entry || !parsed || entry.size > MAX_MANIFEST_BYTES) return undefined;
    try {
      return manifestReferences(JSON.parse(await readFile(this.paths.blobFile(parsed), "utf8")));
    } catch {
      // Evicted meanwhile, or not a manifest: it names nothing.
      return undefined;
    }
  }
}
