import { randomBytes } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import type { Logger } from "../log/logger.js";
import type { Digest } from "../registry/digest.js";
import { addLink, type BlobEntry, type CacheIndex } from "./cache-index.js";
import type { DataPaths } from "./data-paths.js";
import { Download } from "./download.js";
import { chooseEvictions } from "./eviction.js";
import { OpenStreams } from "./read-chunk.js";
import { CachedFileSource, DownloadSource, type RangeSource } from "./range-source.js";

/** Eviction goes below the bound, so that one new blob does not trigger another eviction at once. */
const LOW_WATER_RATIO = 0.9;

/** What an upstream open produced: a body to cache, or an answer that must not be cached. */
export type OpenResult<R> =
  | { kind: "body"; body: Readable; size: number | undefined; mediaType: string; host: string }
  | { kind: "refused"; response: R };

/**
 * For the request that started a fetch: its download, or upstream's own (uncacheable) answer.
 * For requests that joined: the download, or "retry" (ask upstream with their own credentials).
 */
export type FillOutcome<R> =
  | { kind: "download"; download: Download; coalesced: boolean }
  | { kind: "refused"; response: R }
  | { kind: "too-large"; body: Readable; size: number; mediaType: string }
  | { kind: "retry" };

export interface BlobStoreStats {
  evictions: number;
  evictedBytes: number;
}

/**
 * Content-addressed store: one file per digest under DataPaths, rows in CacheIndex,
 * one upstream fetch per digest at a time, LRU eviction that never touches a
 * digest being read or written.
 */
export class BlobStore {
  private readonly fetches = new Map<string, Promise<FillOutcome<unknown>>>();
  private readonly downloads = new Map<string, Download>();
  private readonly pins = new Map<string, number>();
  /** Links of digests still downloading: the starter's repository and any confirmed while it runs. */
  private readonly pendingLinks = new Map<string, string[]>();
  private readonly openStreams = new OpenStreams();
  readonly stats: BlobStoreStats = { evictions: 0, evictedBytes: 0 };

  constructor(
    private readonly paths: DataPaths,
    readonly index: CacheIndex,
    readonly maxBytes: number,
    private readonly logger: Logger,
  ) {}

  lookup(digest: Digest): BlobEntry | undefined {
    return this.index.getBlob(digest.value);
  }

  inFlight(): Download[] {
    return [...this.downloads.values()];
  }

  /** Whether upstream confirmed `digest` in this "host/repository" (cached, or downloading). */
  isLinked(digest: Digest, hostRepository: string): boolean {
    return (this.index.getBlob(digest.value)?.links ?? this.pendingLinks.get(digest.value) ?? []).includes(hostRepository);
  }

  /** Records that upstream confirmed `digest` in this "host/repository". */
  link(digest: Digest, hostRepository: string): void {
    const pending = this.pendingLinks.get(digest.value);
    if (pending) addLink(pending, hostRepository);
    this.index.link(digest.value, hostRepository);
  }

  /** The cached blob's file as a response source; the digest stays pinned until it closes. */
  readCached(entry: BlobEntry, digest: Digest): RangeSource {
    this.index.touch(entry.digest);
    this.pin(entry.digest);
    const slot = this.openStreams.open();
    return new CachedFileSource(this.paths.blobFile(digest), entry.size, slot.chunkSize, () => {
      slot.closed();
      this.unpin(entry.digest);
    });
  }

  readDownload(download: Download): RangeSource {
    const slot = this.openStreams.open();
    return new DownloadSource(download, slot.chunkSize, slot.closed);
  }

  /**
   * Joins the fetch of `digest` in progress, or starts one with `open` for `hostRepository`,
   * which upstream's 200 links the digest to. Only the starter sees upstream's refusal;
   * joiners are told to retry on their own, since a refusal of one client's credentials
   * says nothing about another's. A joiner is not linked by joining (see isLinked).
   */
  async fill<R>(digest: Digest, hostRepository: string, open: () => Promise<OpenResult<R>>): Promise<FillOutcome<R>> {
    const pending = this.fetches.get(digest.value);
    if (pending) {
      const outcome = await pending;
      return outcome.kind === "download" ? { ...outcome, coalesced: true } : { kind: "retry" };
    }
    const started = this.startFetch(digest, hostRepository, open);
    this.fetches.set(digest.value, started);
    const outcome = await started.catch((err: unknown) => {
      this.fetches.delete(digest.value);
      throw err;
    });
    if (outcome.kind !== "download") this.fetches.delete(digest.value);
    return outcome as FillOutcome<R>;
  }

  private async startFetch<R>(digest: Digest, hostRepository: string, open: () => Promise<OpenResult<R>>): Promise<FillOutcome<R>> {
    const result = await open();
    if (result.kind === "refused") return result;
    if (result.size !== undefined && result.size > this.maxBytes) {
      return { kind: "too-large", body: result.body, size: result.size, mediaType: result.mediaType };
    }
    await this.evictFor(result.size ?? 0);
    const finalFile = this.paths.blobFile(digest);
    await mkdir(path.dirname(finalFile), { recursive: true });
    await mkdir(this.paths.tmpDir, { recursive: true });
    const tempFile = path.join(this.paths.tmpDir, `${digest.hex.slice(0, 16)}-${randomBytes(6).toString("hex")}`);
    const download = await Download.start({ digest, host: result.host, size: result.size, mediaType: result.mediaType, body: result.body, tempFile, finalFile });
    this.downloads.set(digest.value, download);
    this.pendingLinks.set(digest.value, [hostRepository]);
    this.pin(digest.value);
    download.done.then(
      () => this.commit(download),
      (err: Error) => {
        this.logger.error({ err, digest: digest.value, upstreamHost: result.host }, "download failed; nothing cached");
        this.release(download);
      },
    );
    return { kind: "download", download, coalesced: false };
  }

  private async commit(download: Download): Promise<void> {
    const now = Date.now();
    const entry: BlobEntry = this.index.getBlob(download.digest.value) ?? {
      digest: download.digest.value,
      size: download.written,
      mediaType: download.mediaType,
      created: now,
      lastAccess: now,
      hits: 0,
      links: [],
    };
    for (const link of this.pendingLinks.get(download.digest.value) ?? []) addLink(entry.links, link);
    try {
      await this.index.putBlob(entry);
    } catch (err) {
      this.logger.error({ err, digest: entry.digest }, "cannot index downloaded blob");
    }
    this.release(download);
    await this.evictFor(0);
  }

  private release(download: Download): void {
    this.downloads.delete(download.digest.value);
    this.pendingLinks.delete(download.digest.value);
    this.fetches.delete(download.digest.value);
    this.unpin(download.digest.value);
  }

  private pin(digest: string): void {
    this.pins.set(digest, (this.pins.get(digest) ?? 0) + 1);
  }

  private unpin(digest: string): void {
    const count = (this.pins.get(digest) ?? 1) - 1;
    if (count <= 0) this.pins.delete(digest);
    else this.pins.set(digest, count);
  }

  /** Makes room for `incoming` more bytes, counting downloads in progress against the bound. */
  private async evictFor(incoming: number): Promise<void> {
    let inProgress = incoming;
    for (const d of this.downloads.values()) inProgress += d.expectedSize ?? d.written;
    const total = this.index.size + inProgress;
    if (total <= this.maxBytes) return;
    const target = Math.max(0, Math.floor(this.maxBytes * LOW_WATER_RATIO));
    const victims = chooseEvictions(this.index.allBlobs(), total, target, (d) => this.pins.has(d));
    for (const digest of victims) {
      const entry = this.index.getBlob(digest);
      if (!entry) continue;
      await this.remove(entry);
      this.stats.evictions += 1;
      this.stats.evictedBytes += entry.size;
    }
    if (victims.length > 0) this.logger.info({ evicted: victims.length, cacheBytes: this.index.size }, "evicted least recently used blobs");
  }

  async remove(entry: BlobEntry): Promise<void> {
    await this.index.deleteBlob(entry.digest);
    const [algorithm, hex] = entry.digest.split(":");
    await rm(path.join(this.paths.blobsDir, algorithm!, hex!.slice(0, 2), hex!), { force: true });
  }
}
