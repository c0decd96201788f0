import { createHash, randomBytes } from "node:crypto";
import { closeSync, openSync } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import type { Logger } from "../log/logger.js";
import { makeDirectory } from "../util/make-directory.js";
import { OpenCount } from "../util/open-count.js";
import { parseDigest, type Digest } from "../oci/digest.js";
import { OCTET_STREAM } from "../oci/media-types.js";
import { addLink, type BlobEntry, type CacheIndex } from "./cache-index.js";
import type { DataPaths } from "./data-paths.js";
import type { DataDisk } from "./data-disk.js";
import { isNoSpace } from "./disk-errors.js";
import { DISK_HEADROOM, effectiveCacheBound, freeBytes } from "./disk-space.js";
import { DigestMismatchError, Download, DownloadAbortedError } from "./download.js";
import { chooseEvictions } from "./eviction.js";
import { hashFile } from "./file-hash.js";
import { HeldBytes, HeldBytesSource } from "./held-bytes.js";
import { readManifestDescription } from "./manifest-file.js";
import { recordLinkType } from "./manifest-types.js";
import { readChunkSize } from "./read-chunk.js";
import { CachedFileSource, DownloadSource, type RangeSource } from "./range-source.js";
import { stampOfDescriptor, stampOfFile, stampOfFileNow, VerifiedFiles, type FileStamp } from "./verified-files.js";

/** Eviction goes below the bound, so that one new blob does not trigger another eviction at once. */
const LOW_WATER_RATIO = 0.9;
/**
 * Files up to this size (every manifest: the distribution spec caps them at 4 MiB) are hashed
 * before every response, unless their verified bytes are held in memory and the file looks as it
 * did when they were read: it costs little, and a manifest served wrong is accepted by clients
 * that pull by tag (they cannot know its digest).
 */
const ALWAYS_CHECKED_BYTES = 4 * 1024 * 1024;
/**
 * Verified small files held in memory (held-bytes.ts). A manifest is a few KB (an index of a
 * hundred platforms ~50 KB; image configs are alike), so 8 MiB holds those of hundreds of images.
 */
const HELD_BYTES = 8 * 1024 * 1024;
const HELD_FILE_BYTES = 256 * 1024;
/** The background scrub hashes at most this fast, so it never competes with clients for the disk. */
const SCRUB_BYTES_PER_SECOND = 64 * 1024 * 1024;
const SCRUB_IDLE_MS = 60_000;
/** A drip-feeding upstream is judged over a minute: long enough for a congested link to recover. */
const RATE_WINDOW_MS = 60_000;
/** Damaged files kept for inspection; older ones are deleted. */
const QUARANTINE_KEEP = 3;
/** How often a disk that read as full is looked at again. */
const ROOM_CHECK_MS = 5_000;
/** Digests whose undeclared size outgrew the disk, remembered (this many, this long) so that their next fills stream through uncached. */
const OUTGREW_DISK_KEEP = 1000;
const OUTGREW_DISK_MS = 60 * 60_000;

export interface BlobStoreOptions {
  /** --max-cache-size: the bound regcache may fill, when the disk can hold it. */
  maxBytes: number;
  /** Cap on a body whose size upstream did not declare. */
  maxBlobSize: number;
  /** Download limits (download.ts). */
  minDownloadRate: number;
  abandonedAfterMs: number;
  /** A cached file is re-hashed when served if it was not verified this run, or not for this long. */
  verifyIntervalMs: number;
}

/**
 * What an upstream open produced: a body to cache (a blob's or a manifest's, with the
 * Content-Type its source gave it for the repository that asked), or an answer that must not be cached.
 */
export type OpenResult<R> =
  | { kind: "body"; content: "blob" | "manifest"; body: Readable; size: number | undefined; mediaType: string; host: string; maxSize?: number }
  | { kind: "refused"; response: R };

/**
 * Why a body streams through uncached: larger than the cache, no room on the disk, a disk that
 * cannot be written (data-disk.ts), or another failure to make its file (out of descriptors, say).
 */
export type UncachedReason = "too-large" | "no-space" | "disk-fault" | "cache-error";

/**
 * For the request that started a fetch: its download, upstream's own (uncacheable) answer, or a
 * body to stream through uncached (larger than the cache, or no room on the disk).
 * For requests that joined: the download, or "retry" (ask upstream with their own credentials).
 */
export type FillOutcome<R> =
  | { kind: "download"; download: Download; coalesced: boolean }
  | { kind: "refused"; response: R }
  | { kind: "uncached"; reason: UncachedReason; body: Readable; size: number | undefined; mediaType: string }
  | { kind: "retry" };

export interface BlobStoreStats {
  evictions: number;
  evictedBytes: number;
  /** Cached files found not to match their digest (quarantined, refetched on the next request). */
  damaged: number;
  /** Downloads whose bytes did not match their digest (from upstream, a peer or the object store): nothing cached, their readers cut. */
  digestMismatches: number;
  /** Index rows whose file was gone or the wrong size (dropped: a miss). */
  missing: number;
  /** Bodies streamed through uncached because the disk had no room, even after eviction. */
  uncachedForSpace: number;
  /** Bodies streamed through uncached because the disk could not be written (read-only, failing). */
  uncachedForDiskFault: number;
  /** When the disk last had no room (ms since the epoch); cleared once it has room again. */
  noSpaceAt: number | undefined;
}

/**
 * Content-addressed store: one file per digest under DataPaths, rows in CacheIndex,
 * one upstream fetch per digest at a time, LRU eviction that never touches a
 * digest being read or written, and files re-checked against their digest when served.
 */
export class BlobStore {
  private readonly fetches = new Map<string, Promise<FillOutcome<unknown>>>();
  private readonly downloads = new Map<string, Download>();
  private readonly pins = new Map<string, number>();
  /** Links of digests still downloading: the starter's repository and any confirmed while it runs. */
  private readonly pendingLinks = new Map<string, string[]>();
  /** What a digest still downloading was asked for as, and the Content-Types upstream gave it per repository. */
  private readonly pendingTypes = new Map<string, { content: "blob" | "manifest"; types: Map<string, string | undefined> }>();
  /** Per download: its index entry once it is stored, undefined if it failed. */
  private readonly stored = new WeakMap<Download, Promise<BlobEntry | undefined>>();
  /** Digests whose file matched its digest since this process started, with what the file looked like then. */
  private readonly verifiedThisRun = new VerifiedFiles();
  private readonly openStreams = new OpenCount(readChunkSize);
  private readonly held = new HeldBytes(HELD_BYTES, HELD_FILE_BYTES);
  private scrubTimer: NodeJS.Timeout | undefined;
  private roomTimer: NodeJS.Timeout | undefined;
  /** Bytes each admitted download may still write: room on the disk promised to it. */
  private readonly reservations = new Map<string, number>();
  /** The bound in force: --max-cache-size, or less while the disk cannot hold that (disk-space.ts). */
  private bound: number;
  readonly stats: BlobStoreStats = { evictions: 0, evictedBytes: 0, damaged: 0, digestMismatches: 0, missing: 0, uncachedForSpace: 0, uncachedForDiskFault: 0, noSpaceAt: undefined };
  /** Digests whose body, of undeclared size, filled the disk, and when (performance.now()): their next fills are not tried (see startFetch). */
  private readonly outgrewDisk = new Map<string, number>();

  constructor(
    private readonly paths: DataPaths,
    readonly index: CacheIndex,
    private readonly options: BlobStoreOptions,
    readonly disk: DataDisk,
    private readonly logger: Logger,
  ) {
    this.bound = options.maxBytes;
  }

  get maxBytes(): number {
    return this.bound;
  }

  /**
   * Lowers the bound to what the disk holds (what is cached plus what is free), or raises it back
   * towards --max-cache-size when space returns; says so when it changes much.
   */
  async fitBoundToDisk(): Promise<void> {
    const free = await freeBytes(this.paths.root);
    let written = 0;
    for (const d of this.downloads.values()) written += d.written;
    const fitted = effectiveCacheBound(this.options.maxBytes, this.index.size + written, free);
    if (fitted < this.options.maxBytes && Math.abs(fitted - this.bound) > this.options.maxBytes / 100) {
      this.logger.warn({ maxCacheSize: this.options.maxBytes, effectiveBytes: fitted, dataDir: this.paths.root }, "the disk holds less than --max-cache-size; the cache is bounded to what fits");
    }
    this.bound = fitted;
    // Room for a download and the index again: the disk is no longer full, whatever it was lately.
    if (free >= 2 * DISK_HEADROOM) this.stats.noSpaceAt = undefined;
  }

  /** Where a stored digest's file is (for an upload of it). */
  fileOf(digest: Digest): string {
    return this.paths.blobFile(digest);
  }

  lookup(digest: Digest): BlobEntry | undefined {
    return this.index.getBlob(digest.value);
  }

  inFlight(): Download[] {
    return [...this.downloads.values()];
  }

  /** The entry of `download` once it is stored and indexed; undefined if it failed. */
  whenStored(download: Download): Promise<BlobEntry | undefined> {
    return this.stored.get(download) ?? Promise.resolve(undefined);
  }

  /** The download of `digest` in progress, if any. */
  downloading(digest: Digest): Download | undefined {
    return this.downloads.get(digest.value);
  }

  /** The "host/repository" a download in progress was started for (the stats page names the image). */
  filledFor(digest: Digest): string | undefined {
    return this.pendingLinks.get(digest.value)?.[0];
  }

  /** Whether upstream confirmed `digest` in this "host/repository" (cached, or downloading). */
  isLinked(digest: Digest, hostRepository: string): boolean {
    return (this.index.getBlob(digest.value)?.links ?? this.pendingLinks.get(digest.value) ?? []).includes(hostRepository);
  }

  /** Records that upstream confirmed `digest` in this "host/repository", with the Content-Type it gave there. */
  link(digest: Digest, hostRepository: string, contentType?: string): void {
    const pending = this.pendingLinks.get(digest.value);
    if (pending) addLink(pending, hostRepository);
    if (contentType !== undefined) this.pendingTypes.get(digest.value)?.types.set(hostRepository, contentType);
    this.index.link(digest.value, hostRepository, contentType);
  }

  /**
   * Whether the row's file is on disk, with its size, and (for a small file: every manifest) its
   * digest. A file deleted, truncated or damaged behind regcache's back is a miss: the row is
   * dropped and the fill refetches it, so the client never notices. Large files are checked while
   * they are served instead (readCached), where a mismatch can only cut the response. A small file
   * whose verified bytes are held in memory (HeldBytes) is not read again: those bytes are what is
   * served. Its file is still looked at (one stat), so that one changed on disk since it was read
   * (verified-files.ts) is hashed again, and quarantined if damaged, as a large one is when served.
   */
  async present(entry: BlobEntry, digest: Digest): Promise<boolean> {
    if (this.held.get(entry)) {
      const stamp = await stampOfFile(this.paths.blobFile(digest));
      if (stamp && this.verifiedThisRun.matches(entry.digest, stamp)) return true;
      this.held.delete(entry.digest);
    }
    if (!(await this.hasFile(entry, digest))) return false;
    return entry.size > ALWAYS_CHECKED_BYTES || (await this.hashMatches(entry, digest));
  }

  /**
   * Hashes the cached file now, whatever its last verification (the scrub's check, on demand too):
   * a damaged file is quarantined, a missing or resized one dropped from the index.
   */
  async verify(entry: BlobEntry, digest: Digest): Promise<"ok" | "damaged" | "missing"> {
    // Checked before pinning: hasFile leaves the row of a pinned digest alone.
    if (!(await this.hasFile(entry, digest))) return "missing";
    // Taken before hashing: a write while the hash runs leaves the file looking changed.
    const stamp = await stampOfFile(this.paths.blobFile(digest));
    this.pin(entry.digest);
    try {
      if (!(await this.hashMatches(entry, digest))) return "damaged";
    } finally {
      this.unpin(entry.digest);
    }
    this.markVerified(entry, stamp);
    return "ok";
  }

  /** Whether the digest is being read or written now: such a file must stay where it is. */
  isInUse(digest: string): boolean {
    return this.pins.has(digest);
  }

  /** Whether the row's file is on disk with its size; a row without one is dropped, unless the digest is in use. */
  private async hasFile(entry: BlobEntry, digest: Digest): Promise<boolean> {
    const size = await stat(this.paths.blobFile(digest)).then(
      (s) => s.size,
      () => undefined,
    );
    if (size === entry.size) return true;
    if (this.pins.has(entry.digest)) return false;
    this.held.delete(entry.digest);
    this.stats.missing += 1;
    this.logger.warn({ digest: entry.digest, expectedBytes: entry.size, foundBytes: size ?? null }, "cached file missing or resized; dropped from the index");
    await this.index.deleteBlob(entry.digest).catch((err: unknown) => this.logger.warn({ err }, "cannot drop index row"));
    return false;
  }

  /**
   * Whether the file hashes to its digest; one that does not (or cannot be read) is quarantined.
   * A small one is read whole, and its bytes held once they match, with what its file looked like.
   */
  private async hashMatches(entry: BlobEntry, digest: Digest): Promise<boolean> {
    const file = this.paths.blobFile(digest);
    let actual: string | undefined;
    if (this.held.admits(entry.size)) {
      // Taken before reading: a write while it is read leaves the file looking changed.
      const stamp = await stampOfFile(file);
      const bytes = await readFile(file).catch(() => undefined);
      actual = bytes && createHash(digest.algorithm).update(bytes).digest("hex");
      if (bytes && actual === digest.hex) {
        this.held.put(entry, bytes);
        this.verifiedThisRun.add(entry.digest, stamp);
      }
    } else actual = await hashFile(file, digest.algorithm).catch(() => undefined);
    if (actual === digest.hex) return true;
    await this.quarantine(entry, digest, `${digest.algorithm}:${actual ?? "unreadable"}`);
    return false;
  }

  /**
   * Bytes [start, end] of the cached file as a response source; the digest stays pinned until it
   * closes. Large files not verified this run (or within --verify-interval), changed on disk since
   * (verified-files.ts), or all of them with `always`, are hashed as they are served, and their
   * last byte is released only if they still match. Small files held in memory are served from there.
   */
  readCached(entry: BlobEntry, digest: Digest, start: number, end: number, always = false): RangeSource {
    this.index.touch(entry.digest);
    const held = this.held.get(entry);
    if (held) return new HeldBytesSource(held);
    const fd = openSync(this.paths.blobFile(digest), "r");
    let stamp: FileStamp;
    try {
      stamp = stampOfDescriptor(fd);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    this.pin(entry.digest);
    const slot = this.openStreams.open();
    const check = this.needsCheck(entry, always, stamp)
      ? {
          algorithm: digest.algorithm,
          hex: digest.hex,
          mode: start === 0 && end === entry.size - 1 ? ("inline" as const) : ("whole" as const),
          onResult: (matched: boolean, actual: string) => (matched ? this.markVerified(entry, stamp) : void this.quarantine(entry, digest, actual)),
        }
      : undefined;
    return new CachedFileSource(
      fd,
      entry.size,
      slot.plan,
      () => {
        slot.closed();
        this.unpin(entry.digest);
      },
      check,
    );
  }

  /** Small files were just checked whole by present(); large ones when asked, or not verified this run, lately, or as they look now. */
  private needsCheck(entry: BlobEntry, always: boolean, stamp: FileStamp): boolean {
    if (entry.size <= ALWAYS_CHECKED_BYTES) return false;
    return always || !this.verifiedThisRun.matches(entry.digest, stamp) || Date.now() - (entry.verifiedAt ?? 0) >= this.options.verifyIntervalMs;
  }

  private markVerified(entry: BlobEntry, stamp: FileStamp | undefined): void {
    this.verifiedThisRun.add(entry.digest, stamp);
    this.index.markVerified(entry.digest, Date.now());
  }

  /** A file that no longer matches its digest leaves the cache (kept aside for inspection); the next request refetches it. */
  private async quarantine(entry: BlobEntry, digest: Digest, actual: string): Promise<void> {
    if (this.index.getBlob(entry.digest) !== entry) return;
    this.stats.damaged += 1;
    this.verifiedThisRun.forget(entry.digest);
    this.held.delete(entry.digest);
    this.logger.error({ digest: entry.digest, actual, bytes: entry.size }, "cached file does not match its digest; quarantined, will be refetched");
    try {
      await this.index.deleteBlob(entry.digest);
      await mkdir(this.paths.quarantineDir, { recursive: true });
      await rename(this.paths.blobFile(digest), path.join(this.paths.quarantineDir, `${digest.hex}.${Date.now()}`));
      const kept = (await readdir(this.paths.quarantineDir)).sort((a, b) => Number(b.split(".")[1]) - Number(a.split(".")[1]));
      for (const old of kept.slice(QUARANTINE_KEEP)) await rm(path.join(this.paths.quarantineDir, old), { force: true });
    } catch (err) {
      this.logger.error({ err, digest: entry.digest }, "cannot quarantine damaged file");
      await rm(this.paths.blobFile(digest), { force: true }).catch(() => undefined);
    }
  }

  readDownload(download: Download): RangeSource {
    const slot = this.openStreams.open();
    return new DownloadSource(download, slot.plan, slot.closed);
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
    const uncached = (reason: UncachedReason): FillOutcome<R> => {
      if (reason === "disk-fault") {
        this.stats.uncachedForDiskFault += 1;
        this.disk.bypassed();
      }
      return { kind: "uncached", reason, body: result.body, size: result.size, mediaType: result.mediaType };
    };
    if (result.size !== undefined && result.size > this.options.maxBytes) return uncached("too-large");
    if (!this.disk.writable) return uncached("disk-fault");
    if (result.size === undefined && this.outgrewDiskLately(digest)) {
      this.stats.uncachedForSpace += 1;
      return uncached("no-space");
    }
    let download: Download;
    try {
      // The disk may have freed up (or filled) since the bound was last fitted: eviction goes by now.
      await this.fitBoundToDisk();
      await this.evictFor(result.size ?? 0);
      if (!(await this.reserveDisk(digest.value, result.size ?? 0))) {
        this.stats.uncachedForSpace += 1;
        this.logger.warn({ digest: digest.value, bytes: result.size ?? null }, "no room on the cache disk, even after eviction; streaming through uncached");
        return uncached("no-space");
      }
      const finalFile = this.paths.blobFile(digest);
      const tempFile = path.join(this.paths.tmpDir, `${digest.hex.slice(0, 16)}-${randomBytes(6).toString("hex")}`);
      await makeDirectory(path.dirname(finalFile));
      await makeDirectory(this.paths.tmpDir);
      download = await this.startDownload(digest, result, tempFile, finalFile);
    } catch (err) {
      // The body is the client's answer still: it streams through, only the cache goes without it.
      this.reservations.delete(digest.value);
      this.logger.error({ err, digest: digest.value }, "cannot create a cache file; streaming through uncached");
      if (isNoSpace(err)) {
        this.noRoom();
        this.stats.uncachedForSpace += 1;
        return uncached("no-space");
      }
      return uncached(this.disk.failed(err, "create a cache file") ? "disk-fault" : "cache-error");
    }
    this.downloads.set(digest.value, download);
    this.pendingLinks.set(digest.value, [hostRepository]);
    this.pendingTypes.set(digest.value, { content: result.content, types: new Map([[hostRepository, result.mediaType]]) });
    this.pin(digest.value);
    const stored = download.done.then(
      () => this.commit(download),
      (err: Error) => {
        if (err instanceof DigestMismatchError) this.stats.digestMismatches += 1;
        this.disk.failed(err, "write a cache file");
        this.logger.error({ err, digest: digest.value, upstreamHost: result.host }, "download failed; nothing cached");
        this.release(download);
        return undefined;
      },
    );
    this.stored.set(
      download,
      stored.catch((err: unknown) => {
        this.logger.error({ err, digest: digest.value }, "cannot record a stored download");
        return undefined;
      }),
    );
    return { kind: "download", download, coalesced: false };
  }

  private startDownload(digest: Digest, result: Extract<OpenResult<unknown>, { kind: "body" }>, tempFile: string, finalFile: string): Promise<Download> {
    return Download.start({
      digest,
      host: result.host,
      size: result.size,
      mediaType: result.mediaType,
      body: result.body,
      tempFile,
      finalFile,
      limits: {
        maxBytes: result.size ?? Math.min(result.maxSize ?? Infinity, this.options.maxBlobSize),
        minRate: this.options.minDownloadRate,
        rateWindowMs: RATE_WINDOW_MS,
        abandonedAfterMs: this.options.abandonedAfterMs,
      },
      makeRoom: result.size === undefined ? () => this.refuseRoom(digest, result.host) : (bytes) => this.makeRoom(bytes),
    });
  }

  private async commit(download: Download): Promise<BlobEntry> {
    const now = Date.now();
    const pending = this.pendingTypes.get(download.digest.value);
    const content = pending?.content ?? "blob";
    // A manifest's type is what it declares, read from the bytes just verified (manifest-types.ts).
    const declared = content === "manifest" ? (await readManifestDescription(this.paths.blobFile(download.digest), download.written)).declared : undefined;
    const entry: BlobEntry = this.index.getBlob(download.digest.value) ?? {
      digest: download.digest.value,
      size: download.written,
      kind: content,
      mediaType: content === "blob" ? OCTET_STREAM : (declared ?? ""),
      created: now,
      lastAccess: now,
      hits: 0,
      links: [],
    };
    for (const link of this.pendingLinks.get(download.digest.value) ?? []) addLink(entry.links, link);
    for (const [link, type] of pending?.types ?? []) recordLinkType(entry, link, type);
    // Its bytes were hashed on the way in: as verified as a file can be.
    entry.verifiedAt = now;
    this.verifiedThisRun.add(entry.digest, stampOfFileNow(this.paths.blobFile(download.digest)));
    await this.index.putBlob(entry);
    this.release(download);
    await this.evictFor(0).catch((err: unknown) => this.logger.error({ err }, "eviction failed"));
    return entry;
  }

  private release(download: Download): void {
    this.downloads.delete(download.digest.value);
    this.reservations.delete(download.digest.value);
    this.pendingLinks.delete(download.digest.value);
    this.pendingTypes.delete(download.digest.value);
    this.fetches.delete(download.digest.value);
    this.unpin(download.digest.value);
    // What the download held on the disk is freed or now cached: the bound and "disk full" go by the disk as it is now.
    this.fitBoundToDisk().catch((err: unknown) => this.disk.failed(err, "read the free space"));
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
    if (total <= this.bound) return;
    await this.evictDownTo(total, Math.max(0, Math.floor(this.bound * LOW_WATER_RATIO)));
  }

  /** Evicts least recently used blobs until `total` (what the cache would hold) is at most `target`. */
  private async evictDownTo(total: number, target: number): Promise<number> {
    const victims = chooseEvictions(this.index.allBlobs(), total, target, (d) => this.pins.has(d));
    let freed = 0;
    for (const digest of victims) {
      const entry = this.index.getBlob(digest);
      if (!entry) continue;
      try {
        await this.remove(entry);
      } catch (err) {
        // A disk that cannot delete cannot free room either: the rest stay cached.
        this.disk.failed(err, "evict a cached file");
        this.logger.error({ err, digest }, "cannot evict a cached file");
        break;
      }
      freed += entry.size;
      this.stats.evictions += 1;
      this.stats.evictedBytes += entry.size;
    }
    if (victims.length > 0) this.logger.info({ evicted: victims.length, freedBytes: freed, cacheBytes: this.index.size }, "evicted least recently used blobs");
    return freed;
  }

  /**
   * Promises `digest` room for `size` more bytes on the disk, beside what admitted downloads may
   * still write: the cache bound says how much regcache may keep, the disk how much it can
   * (another tenant, or a disk smaller than --max-cache-size). Evicts when that makes the room;
   * false when even eviction cannot (the body then streams through uncached).
   */
  private async reserveDisk(digest: string, size: number): Promise<boolean> {
    const promised = (): number => {
      let bytes = DISK_HEADROOM + size;
      for (const [d, reserved] of this.reservations) bytes += Math.max(0, reserved - (this.downloads.get(d)?.written ?? 0));
      return bytes;
    };
    let free = await freeBytes(this.paths.root);
    if (free < promised()) {
      // Evicting what cannot make the room would only empty the cache for nothing.
      if (free + this.evictableBytes() < promised()) return this.noRoom();
      await this.evictDownTo(this.index.size, this.index.size - (promised() - free));
      free = await freeBytes(this.paths.root);
    }
    // No await between this check and the reservation: concurrent fills see each other's.
    if (free < promised()) return this.noRoom();
    this.reservations.set(digest, size);
    return true;
  }

  private noRoom(): false {
    this.stats.noSpaceAt = Date.now();
    this.watchForRoom();
    return false;
  }

  /**
   * While the disk reads as full, it is looked at again every few seconds: room freed by a failed
   * download's last reader, or by another tenant, shows in the bound and the stats without waiting
   * for the next fill.
   */
  private watchForRoom(): void {
    if (this.roomTimer) return;
    this.roomTimer = setTimeout(() => {
      this.roomTimer = undefined;
      this.fitBoundToDisk().then(
        () => this.stats.noSpaceAt !== undefined && this.watchForRoom(),
        () => this.watchForRoom(),
      );
    }, ROOM_CHECK_MS);
    this.roomTimer.unref();
  }

  /**
   * A write of a declared-size download hit ENOSPC (something else filled the disk): evict enough
   * for it and the headroom, so the download can retry once; unless eviction cannot make that room,
   * when emptying the cache would only lose it for nothing.
   */
  private async makeRoom(bytes: number): Promise<void> {
    this.noRoom();
    const needed = bytes + DISK_HEADROOM;
    if ((await freeBytes(this.paths.root)) + this.evictableBytes() < needed) throw new Error("no room even after eviction");
    await this.evictDownTo(this.index.size, this.index.size - needed);
  }

  /**
   * A body of undeclared size filled the disk: it may be endless, and eviction would empty the cache
   * for it, so the download stops here, and the digest's next fill streams through uncached.
   */
  private async refuseRoom(digest: Digest, host: string): Promise<never> {
    this.noRoom();
    this.outgrewDisk.delete(digest.value);
    this.outgrewDisk.set(digest.value, performance.now());
    if (this.outgrewDisk.size > OUTGREW_DISK_KEEP) this.outgrewDisk.delete(this.outgrewDisk.keys().next().value!);
    throw new DownloadAbortedError(host, "the cache disk is full and upstream did not declare the size; the next request streams it through uncached");
  }

  private outgrewDiskLately(digest: Digest): boolean {
    const at = this.outgrewDisk.get(digest.value);
    if (at === undefined) return false;
    if (performance.now() - at < OUTGREW_DISK_MS) return true;
    this.outgrewDisk.delete(digest.value);
    return false;
  }

  private evictableBytes(): number {
    let bytes = 0;
    for (const entry of this.index.allBlobs()) if (!this.pins.has(entry.digest)) bytes += entry.size;
    return bytes;
  }

  /** The file first: a disk that refuses to delete it keeps the entry, still served. */
  async remove(entry: BlobEntry): Promise<void> {
    const [algorithm, hex] = entry.digest.split(":");
    await rm(path.join(this.paths.blobsDir, algorithm!, hex!.slice(0, 2), hex!), { force: true });
    await this.index.deleteBlob(entry.digest);
    this.verifiedThisRun.forget(entry.digest);
    this.held.delete(entry.digest);
  }

  /**
   * Removes what tmp/ holds that no download in progress writes: partial files a disk that turned
   * read-only could not remove (called when it can be written again). Never rejects.
   */
  async removeStrayTempFiles(): Promise<number> {
    const writing = new Set([...this.downloads.values()].map((d) => path.basename(d.tempFile)));
    let removed = 0;
    for (const name of await readdir(this.paths.tmpDir).catch(() => [] as string[])) {
      if (writing.has(name)) continue;
      if (await rm(path.join(this.paths.tmpDir, name), { recursive: true, force: true }).then(() => true, () => false)) removed += 1;
    }
    return removed;
  }

  /**
   * Walks the cache in the background, oldest verification first, re-hashing files not verified
   * within --verify-interval, at a pace that leaves the disk to clients. A damaged file is found
   * even if nobody asks for it.
   */
  startScrub(): void {
    this.scheduleScrub(Math.min(SCRUB_IDLE_MS, this.options.verifyIntervalMs));
  }

  stopScrub(): void {
    clearTimeout(this.scrubTimer);
    clearTimeout(this.roomTimer);
  }

  private scheduleScrub(delayMs: number): void {
    this.scrubTimer = setTimeout(() => {
      this.scrubOne().then(
        (next) => this.scheduleScrub(next),
        (err: unknown) => {
          this.logger.warn({ err }, "cache scrub failed; retrying later");
          this.scheduleScrub(SCRUB_IDLE_MS);
        },
      );
    }, delayMs);
    this.scrubTimer.unref();
  }

  /** Verifies the most overdue file, if any; returns how long to wait before the next. */
  private async scrubOne(): Promise<number> {
    const now = Date.now();
    let due: BlobEntry | undefined;
    for (const entry of this.index.allBlobs()) {
      if (this.pins.has(entry.digest) || now - (entry.verifiedAt ?? 0) < this.options.verifyIntervalMs) continue;
      if (!due || (entry.verifiedAt ?? 0) < (due.verifiedAt ?? 0)) due = entry;
    }
    const idle = Math.min(SCRUB_IDLE_MS, this.options.verifyIntervalMs);
    if (!due) return idle;
    const digest = parseDigest(due.digest);
    if (!digest) return idle;
    // A missing file cost no reading: nothing to pace.
    if ((await this.verify(due, digest)) === "missing") return 0;
    return Math.ceil((due.size * 1000) / SCRUB_BYTES_PER_SECOND);
  }
}
