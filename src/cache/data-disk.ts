import { randomBytes } from "node:crypto";
import { mkdir, open, rm, rmdir } from "node:fs/promises";
import path from "node:path";
import { systemReason } from "../errors.js";
import type { Logger } from "../log/logger.js";
import { makeDirectory } from "../util/make-directory.js";
import type { DataPaths } from "./data-paths.js";

/** While the disk refuses writes, it is tried again this often: a remount or a fixed directory is noticed within it. */
const PROBE_INTERVAL_MS = 5_000;
/** A disk that stays unwritable is said again this often, with how much went uncached meanwhile. */
const WARN_EVERY_MS = 60_000;

/**
 * The errors of a disk, or a data dir on it, that cannot be written for now: read-only (ext4
 * `errors=remount-ro`, a read-only remount), failing (EIO, a damaged filesystem's EUCLEAN, a
 * network volume gone stale or away), or a directory regcache needs replaced by a file or
 * locked (EEXIST and ENOTDIR; EACCES, EPERM, e.g. `chattr +i`). A full disk is its own condition (blob-store.ts
 * evicts and retries), and an upstream's failure while a body is written is no disk's.
 */
const DISK_FAULTS = new Set(["EROFS", "EIO", "EUCLEAN", "ESTALE", "ENODEV", "ENXIO", "ENOTDIR", "EISDIR", "EEXIST", "ENOENT", "EACCES", "EPERM"]);

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
 * that state a probe writes and removes a file in tmp/ every PROBE_INTERVAL_MS; the first that
 * succeeds ends it, and `onWritable` callbacks (the index reopening its file, the lock moving
 * back onto the disk) run before caching resumes.
 */
export class DataDisk {
  private current: DiskFault | undefined;
  private probeTimer: NodeJS.Timeout | undefined;
  private lastWarningAt = -Infinity;
  private uncachedSinceWarning = 0;
  private readonly writableAgain: (() => Promise<void>)[] = [];

  constructor(
    private readonly paths: DataPaths,
    private readonly logger: Logger,
  ) {}

  get writable(): boolean {
    return this.current === undefined;
  }

  /** Why the disk is not written now; undefined while it is. */
  get fault(): DiskFault | undefined {
    return this.current;
  }

  /** Tries a write now (at start-up): a disk that refuses it starts in read-only mode. */
  async check(): Promise<void> {
    try {
      await this.writeProbeFile();
    } catch (err) {
      if (!this.failed(err, "write in the data dir")) throw err;
    }
  }

  /** Runs when the disk takes writes again, before caching resumes; a callback that throws keeps the disk read-only. */
  onWritable(callback: () => Promise<void>): void {
    this.writableAgain.push(callback);
  }

  /**
   * Judges a failed disk operation: a fault of the disk puts regcache in read-only mode (true);
   * anything else (a full disk, a name taken) is the caller's to handle (false).
   */
  failed(err: unknown, action: string): boolean {
    const code = (err as NodeJS.ErrnoException | undefined)?.code;
    if (code === undefined || !DISK_FAULTS.has(code)) return false;
    if (!this.current) {
      this.current = { action, code, reason: systemReason(err), since: Date.now() };
      this.lastWarningAt = -Infinity;
      this.warn();
      this.scheduleProbe();
    }
    return true;
  }

  /** Counts a body streamed through uncached because of the fault (said in the next warning). */
  bypassed(): void {
    if (!this.current) return;
    this.uncachedSinceWarning += 1;
    if (performance.now() - this.lastWarningAt >= WARN_EVERY_MS) this.warn();
  }

  /** Stops the probe (shutdown). */
  stop(): void {
    clearTimeout(this.probeTimer);
    this.probeTimer = undefined;
  }

  private warn(): void {
    const fault = this.current;
    if (!fault) return;
    this.lastWarningAt = performance.now();
    this.logger.warn(
      { dataDir: this.paths.root, action: fault.action, code: fault.code, reason: fault.reason, since: new Date(fault.since).toISOString(), uncachedSinceLastWarning: this.uncachedSinceWarning },
      "data disk cannot be written: serving what is cached, streaming misses through uncached until it can",
    );
    this.uncachedSinceWarning = 0;
  }

  private scheduleProbe(): void {
    clearTimeout(this.probeTimer);
    this.probeTimer = setTimeout(() => void this.probe(), PROBE_INTERVAL_MS);
    this.probeTimer.unref();
  }

  private async probe(): Promise<void> {
    if (!this.current) return;
    try {
      await this.writeProbeFile();
      for (const callback of this.writableAgain) await callback();
    } catch (err) {
      if (performance.now() - this.lastWarningAt >= WARN_EVERY_MS) {
        this.current.reason = systemReason(err);
        this.warn();
      }
      this.scheduleProbe();
      return;
    }
    const fault = this.current;
    this.current = undefined;
    this.logger.info({ dataDir: this.paths.root, readOnlySince: new Date(fault.since).toISOString() }, "data disk writable again: caching resumes");
  }

  /**
   * What a fill does, and no more: writes, flushes and removes a file where downloads are written,
   * and makes and removes a directory where they are kept (one per digest prefix).
   */
  private async writeProbeFile(): Promise<void> {
    const name = `.probe-${randomBytes(6).toString("hex")}`;
    await makeDirectory(this.paths.tmpDir);
    const file = path.join(this.paths.tmpDir, name);
    const handle = await open(file, "wx", 0o600);
    try {
      await handle.writeFile("regcache\n");
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rm(file);
    const prefixes = path.join(this.paths.blobsDir, "sha256");
    await makeDirectory(prefixes);
    await mkdir(path.join(prefixes, name));
    await rmdir(path.join(prefixes, name));
  }
}
