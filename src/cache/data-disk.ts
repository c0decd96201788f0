import { randomBytes } from "node:crypto";
import { open, rm } from "node:fs/promises";
import path from "node:path";
import { systemReason } from "../errors.js";
import type { Logger } from "../log/logger.js";
import { makeDirectory } from "../util/make-directory.js";
import type { DataPaths } from "./data-paths.js";
import { errnoOf, isDiskFault, isNoSpace } from "./disk-errors.js";

/** While the disk refuses writes, it is tried again this often: a remount or a fixed directory is noticed within it. */
const PROBE_INTERVAL_MS = 5_000;
/** A disk that stays unwritable (or keeps failing again) is said at most this often, with how much went uncached meanwhile. */
const WARN_EVERY_MS = 60_000;

export interface DiskFault {
  /** What failed, e.g. "create a cache file". */
  action: string;
  /** errno code, e.g. EROFS. */
  code: string;
  /** In words, e.g. "read-only file system". */
  reason: string;
  /** ms since the epoch: shown, never used to measure. */
  since: number;
}

/**
 * Whether the data disk takes writes. A disk that turns read-only (ext4 `errors=remount-ro`
 * after an I/O error), a data dir whose tmp/ or blobs/ cannot be written: regcache serves what
 * it holds and streams misses through uncached, instead of failing them or exiting. While in
 * that state a probe writes and removes a file where fills write (tmp/, blobs/, and the
 * directory the failure named) every PROBE_INTERVAL_MS; the first that succeeds ends it, after
 * the `onWritable` callbacks (the index reopening its file, the lock moving back onto the disk).
 */
export class DataDisk {
  private current: (DiskFault & { dirs: string[]; err: unknown }) | undefined;
  private probeTimer: NodeJS.Timeout | undefined;
  private lastWarningAt = -Infinity;
  /** The errno last warned of: a fault of another kind is said at once, the same one again (a flapping disk) once a minute. */
  private lastWarnedCode: string | undefined;
  private uncachedSinceWarning = 0;
  private readonly writableAgain: ((fault: unknown) => Promise<void>)[] = [];

  constructor(
    private readonly paths: DataPaths,
    private readonly logger: Logger,
  ) {}

  get writable(): boolean {
    return this.current === undefined;
  }

  /** Why the disk is not written now; undefined while it is. */
  get fault(): DiskFault | undefined {
    if (!this.current) return undefined;
    const { action, code, reason, since } = this.current;
    return { action, code, reason, since };
  }

  /**
   * Tries a write now (at start-up): a disk that refuses it starts in read-only mode. A full disk
   * is not a fault (the store streams through what it cannot hold, and evicts when it can).
   */
  async check(): Promise<void> {
    try {
      await this.probe([]);
    } catch (err) {
      if (!isNoSpace(err) && !this.failed(err, "write in the data dir")) throw err;
    }
  }

  /**
   * Runs when the disk takes writes again, before caching resumes, with the error that began the
   * fault; a callback that throws keeps the disk read-only (and is called again at the next probe).
   */
  onWritable(callback: (fault: unknown) => Promise<void>): void {
    this.writableAgain.push(callback);
  }

  /**
   * Judges a failed disk operation: a fault of the disk puts regcache in read-only mode (true);
   * anything else (a full disk, an upstream's failure while a body was written) is the caller's
   * to handle (false).
   */
  failed(err: unknown, action: string): boolean {
    if (!isDiskFault(err)) return false;
    if (!this.current) {
      this.current = { action, code: errnoOf(err)!, reason: systemReason(err), since: Date.now(), dirs: this.probeDirsFor(err), err };
      if (this.current.code !== this.lastWarnedCode) this.lastWarningAt = -Infinity;
      this.warnAtMostEveryMinute();
      this.scheduleProbe();
    }
    return true;
  }

  /** Counts a body streamed through uncached because of the fault (said in the next warning). */
  bypassed(): void {
    if (!this.current) return;
    this.uncachedSinceWarning += 1;
    this.warnAtMostEveryMinute();
  }

  /** Stops the probe (shutdown). */
  stop(): void {
    clearTimeout(this.probeTimer);
    this.probeTimer = undefined;
  }

  private warnAtMostEveryMinute(): void {
    const fault = this.current;
    if (!fault || performance.now() - this.lastWarningAt < WARN_EVERY_MS) return;
    this.lastWarningAt = performance.now();
    this.lastWarnedCode = fault.code;
    this.logger.warn(
      { dataDir: this.paths.root, action: fault.action, code: fault.code, reason: fault.reason, since: new Date(fault.since).toISOString(), uncachedSinceLastWarning: this.uncachedSinceWarning },
      "data disk cannot be written: serving what is cached, streaming misses through uncached until it can",
    );
    this.uncachedSinceWarning = 0;
  }

  /** The directory the failure named (a prefix dir under blobs/, say), when it is in the data dir: the probe must write there too. */
  private probeDirsFor(err: unknown): string[] {
    const failed = (err as NodeJS.ErrnoException).path;
    if (!failed) return [];
    const dir = path.dirname(path.resolve(failed));
    const inside = path.relative(this.paths.root, dir);
    return inside.startsWith("..") || path.isAbsolute(inside) ? [] : [dir];
  }

  private scheduleProbe(): void {
    clearTimeout(this.probeTimer);
    this.probeTimer = setTimeout(() => void this.probeAgain(), PROBE_INTERVAL_MS);
    this.probeTimer.unref();
  }

  private async probeAgain(): Promise<void> {
    const fault = this.current;
    if (!fault) return;
    try {
      await this.probe(fault.dirs);
      for (const callback of this.writableAgain) await callback(fault.err);
    } catch (err) {
      fault.reason = systemReason(err);
      this.warnAtMostEveryMinute();
      this.scheduleProbe();
      return;
    }
    this.current = undefined;
    this.logger.info({ dataDir: this.paths.root, readOnlySince: new Date(fault.since).toISOString() }, "data disk writable again: caching resumes");
  }

  /** What a fill does, and no more: writes, flushes and removes a file in tmp/, in blobs/sha256/ and in `extraDirs`. */
  private async probe(extraDirs: string[]): Promise<void> {
    for (const dir of new Set([this.paths.tmpDir, path.join(this.paths.blobsDir, "sha256"), ...extraDirs])) {
      await makeDirectory(dir);
      const file = path.join(dir, `.probe-${randomBytes(6).toString("hex")}`);
      const handle = await open(file, "wx", 0o600);
      try {
        await handle.writeFile("regcache\n");
        await handle.sync();
      } finally {
        await handle.close();
        await rm(file, { force: true });
      }
    }
  }
}
