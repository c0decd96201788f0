import { createHash, type Hash } from "node:crypto";
import { EventEmitter } from "node:events";
import { close, fsync, open, openSync, read, writev } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { Writable, pipeline, type Readable } from "node:stream";
import type { Digest } from "../oci/digest.js";
import { streamBegins } from "../util/heap-growth.js";

export class DigestMismatchError extends Error {
  constructor(
    readonly expected: string,
    readonly actual: string,
    readonly host: string,
  ) {
    super(`digest mismatch from upstream ${host}: expected ${expected}, got ${actual}`);
    this.name = "DigestMismatchError";
  }
}

export class SizeMismatchError extends Error {
  constructor(expected: number, actual: number, host: string) {
    super(`size mismatch from upstream ${host}: Content-Length ${expected}, received ${actual} bytes`);
    this.name = "SizeMismatchError";
  }
}

/** Why a download was given up before upstream finished: too much, too slow, or nobody waiting. */
export class DownloadAbortedError extends Error {
  constructor(host: string, reason: string) {
    super(`download from upstream ${host} aborted: ${reason}`);
    this.name = "DownloadAbortedError";
  }
}

/** Bounds on what an upstream may make a download do. */
export interface DownloadLimits {
  /** Bytes beyond this end the download: the declared length, or a cap when none was declared. */
  maxBytes: number;
  /** Bytes per second below which, sustained over `rateWindowMs`, the download is aborted. */
  minRate: number;
  /** How long the rate is judged over: long enough for a congested link to recover (ms). */
  rateWindowMs: number;
  /** With no reader left this long, a download far from done is aborted (ms). */
  abandonedAfterMs: number;
}

/** The rate is sampled this many times per window. */
const RATE_SAMPLES_PER_WINDOW = 12;

export interface DownloadSpec {
  digest: Digest;
  host: string;
  /** Expected size from upstream's Content-Length, if it sent one. */
  size: number | undefined;
  mediaType: string;
  body: Readable;
  tempFile: string;
  finalFile: string;
  limits: DownloadLimits;
  /**
   * Asked once when a write fails with ENOSPC, to free at least this many bytes before the write
   * is retried; a rejection with a DownloadAbortedError says why the download stops instead.
   */
  makeRoom: (bytes: number) => Promise<void>;
}

/** streaming → verified (digest checked: readers may have every byte) → complete (fsynced, renamed) | failed. */
type State = "streaming" | "verified" | "complete" | "failed";

/**
 * One upstream body being written to a temp file, hashed as it goes, then
 * verified, fsynced and renamed into place. Readers (DownloadSource, sendRange) read the
 * temp file through this object's descriptor as bytes land, so any number of
 * clients share one upstream fetch, each at its own pace, without per-client buffers.
 *
 * The last byte is never released before the digest is verified: a reader can
 * never receive a complete body with a wrong digest: a client that checks only the length would keep it.
 */
export class Download extends EventEmitter {
  readonly digest: Digest;
  readonly host: string;
  readonly mediaType: string;
  readonly expectedSize: number | undefined;
  written = 0;
  private state: State = "streaming";
  private failure: Error | undefined;
  private fd = -1;
  private readers = 0;
  private readonly hash: Hash;
  private readonly rateSamples: { at: number; written: number }[] = [];
  private rateTimer: NodeJS.Timeout | undefined;
  private abandonTimer: NodeJS.Timeout | undefined;
  /** Says the heap that this download's bytes stopped flowing (util/heap-growth.ts). */
  private streamEnded: () => void = () => undefined;
  readonly done: Promise<void>;

  private constructor(private readonly spec: DownloadSpec) {
    super();
    this.setMaxListeners(0);
    this.digest = spec.digest;
    this.host = spec.host;
    this.mediaType = spec.mediaType;
    this.expectedSize = spec.size;
    this.hash = createHash(spec.digest.algorithm);
    this.done = new Promise((resolve, reject) => {
      this.once("settled", (err?: Error) => (err ? reject(err) : resolve()));
    });
    // Waiters observe failures through readers; an unobserved rejection must not crash the process.
    this.done.catch(() => undefined);
  }

  static async start(spec: DownloadSpec): Promise<Download> {
    const download = new Download(spec);
    download.fd = await new Promise<number>((resolve, reject) =>
      open(spec.tempFile, "wx+", 0o644, (err, fd) => (err ? reject(err) : resolve(fd))),
    );
    download.streamEnded = streamBegins();
    download.run();
    return download;
  }

  /** The file the body is written to while it streams. */
  get tempFile(): string {
    return this.spec.tempFile;
  }

  get size(): number | undefined {
    return this.state === "complete" ? this.written : this.expectedSize;
  }

  get failed(): Error | undefined {
    return this.failure;
  }

  get complete(): boolean {
    return this.state === "complete";
  }

  /** The digest checked out: every byte is written and releasable (the fsync may be pending). */
  get verified(): boolean {
    return this.state === "verified" || this.state === "complete";
  }

  /** How many bytes from the start readers may have now. */
  get releasable(): number {
    if (this.verified) return this.written;
    const cap = this.expectedSize === undefined ? this.written - 1 : Math.min(this.written, this.expectedSize - 1);
    return Math.max(0, cap);
  }

  attachReader(): number {
    this.readers += 1;
    clearTimeout(this.abandonTimer);
    this.abandonTimer = undefined;
    // A reader can arrive after completion closed the temp file's descriptor (the index
    // entry is written a moment later): the same bytes are in the final file by then.
    if (this.fd < 0 && this.state === "complete") this.fd = openSync(this.spec.finalFile, "r");
    return this.fd;
  }

  /**
   * Keeps the temp file's descriptor open while a request decides (asynchronously)
   * whether to read: a small download can complete, and would otherwise close it, meanwhile.
   */
  hold(): () => void {
    this.attachReader();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.detachReader();
    };
  }

  detachReader(): void {
    this.readers -= 1;
    if (this.readers === 0 && this.state === "streaming") this.watchAbandoned();
    this.maybeCloseFd();
  }

  /**
   * The cache fill outlives the client that started it, so the next one finds it warm; but a
   * fill nobody waits for that is far from done only holds a connection and disk for no one.
   */
  private watchAbandoned(): void {
    clearTimeout(this.abandonTimer);
    this.abandonTimer = setTimeout(() => {
      const farFromDone = this.expectedSize === undefined || this.written < this.expectedSize / 2;
      if (this.readers === 0 && this.state === "streaming" && farFromDone) this.abort("no client is waiting for it");
    }, this.spec.limits.abandonedAfterMs);
    this.abandonTimer.unref();
  }

  private abort(reason: string): void {
    this.spec.body.destroy(new DownloadAbortedError(this.host, reason));
  }

  private checkRate(): void {
    // Monotonic: a step of the wall clock must neither abort a healthy download nor spare a stalled one.
    const now = performance.now();
    this.rateSamples.push({ at: now, written: this.written });
    const window = this.spec.limits.rateWindowMs;
    while (this.rateSamples.length > 1 && now - this.rateSamples[1]!.at >= window) this.rateSamples.shift();
    const oldest = this.rateSamples[0]!;
    if (now - oldest.at < window) return;
    const rate = ((this.written - oldest.written) * 1000) / (now - oldest.at);
    if (rate < this.spec.limits.minRate) this.abort(`${Math.round(rate)} bytes/s over ${window / 1000} s, below the minimum of ${this.spec.limits.minRate}`);
  }

  readAt(buffer: Buffer, length: number, position: number, callback: (err: Error | null, bytesRead: number) => void): void {
    read(this.fd, buffer, 0, length, position, (err, n) => callback(err, n));
  }

  private run(): void {
    this.rateSamples.push({ at: performance.now(), written: 0 });
    this.rateTimer = setInterval(() => this.checkRate(), this.spec.limits.rateWindowMs / RATE_SAMPLES_PER_WINDOW);
    this.rateTimer.unref();
    const append = (chunks: Buffer[], callback: (err?: Error | null) => void): void => {
      let length = 0;
      for (const chunk of chunks) length += chunk.length;
      if (this.written + length > this.spec.limits.maxBytes) {
        return callback(new DownloadAbortedError(this.host, `more than ${this.spec.limits.maxBytes} bytes (${this.expectedSize === undefined ? "the size cap" : "the declared length"})`));
      }
      for (const chunk of chunks) this.hash.update(chunk);
      const written = (err: Error | null): void => {
        if (err) return callback(err);
        this.written += length;
        this.emit("progress");
        callback();
      };
      writeFully(this.fd, [...chunks], this.written, (err) => {
        if ((err as NodeJS.ErrnoException | null)?.code !== "ENOSPC") return written(err);
        this.spec.makeRoom(length).then(
          () => writeFully(this.fd, chunks, this.written, written),
          (refusal: unknown) => written(refusal instanceof DownloadAbortedError ? refusal : err),
        );
      });
    };
    const sink = new Writable({
      highWaterMark: 1024 * 1024,
      write: (chunk: Buffer, _encoding, callback) => append([chunk], callback),
      // Chunks that queued up while a write was in flight go to disk in one call, without a copy.
      writev: (chunks, callback) => append(chunks.map((c) => c.chunk as Buffer), callback),
    });
    pipeline(this.spec.body, sink, (err) => void this.finish(err ?? undefined));
  }

  private async finish(err: Error | undefined): Promise<void> {
    clearInterval(this.rateTimer);
    clearTimeout(this.abandonTimer);
    try {
      if (err) throw err;
      if (this.expectedSize !== undefined && this.written !== this.expectedSize) {
        throw new SizeMismatchError(this.expectedSize, this.written, this.host);
      }
      const actual = `${this.digest.algorithm}:${this.hash.digest("hex")}`;
      if (actual !== this.digest.value) throw new DigestMismatchError(this.digest.value, actual, this.host);
      // The bytes are proven right: readers get the last of them now, not after the disk flush.
      this.state = "verified";
      this.emit("progress");
      await new Promise<void>((resolve, reject) => fsync(this.fd, (err) => (err ? reject(err) : resolve())));
      await rename(this.spec.tempFile, this.spec.finalFile);
      this.state = "complete";
    } catch (failure) {
      this.state = "failed";
      this.failure = failure as Error;
      // A disk that turned read-only keeps the partial file; start-up's recovery removes it.
      await rm(this.spec.tempFile, { force: true }).catch(() => undefined);
    }
    this.streamEnded();
    this.emit("progress");
    this.emit("settled", this.failure);
    this.maybeCloseFd();
  }

  private maybeCloseFd(): void {
    // Not while "verified": the fsync still needs the descriptor, and a reader arriving before
    // the rename completes reads the temp file through it.
    if ((this.state === "complete" || this.state === "failed") && this.readers === 0 && this.fd >= 0) {
      const fd = this.fd;
      this.fd = -1;
      close(fd, () => undefined);
    }
  }
}

function writeFully(fd: number, chunks: Buffer[], position: number, callback: (err: Error | null) => void): void {
  writev(fd, chunks, position, (err, written) => {
    if (err) return callback(err);
    let rest = written;
    while (chunks.length > 0 && rest >= chunks[0]!.length) rest -= chunks.shift()!.length;
    if (chunks.length === 0) return callback(null);
    chunks[0] = chunks[0]!.subarray(rest);
    writeFully(fd, chunks, position + written, callback);
  });
}
