import { createHash, type Hash } from "node:crypto";
import { EventEmitter } from "node:events";
import { close, fsync, open, openSync, read, writev } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { Writable, pipeline, type Readable } from "node:stream";
import type { Digest } from "../registry/digest.js";

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

export interface DownloadSpec {
  digest: Digest;
  host: string;
  /** Expected size from upstream's Content-Length, if it sent one. */
  size: number | undefined;
  mediaType: string;
  body: Readable;
  tempFile: string;
  finalFile: string;
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
    download.run();
    return download;
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
    this.maybeCloseFd();
  }

  readAt(buffer: Buffer, length: number, position: number, callback: (err: Error | null, bytesRead: number) => void): void {
    read(this.fd, buffer, 0, length, position, (err, n) => callback(err, n));
  }

  private run(): void {
    const append = (chunks: Buffer[], callback: (err?: Error | null) => void): void => {
      let length = 0;
      for (const chunk of chunks) {
        this.hash.update(chunk);
        length += chunk.length;
      }
      writeFully(this.fd, chunks, this.written, (err) => {
        if (err) return callback(err);
        this.written += length;
        this.emit("progress");
        callback();
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
      await rm(this.spec.tempFile, { force: true });
    }
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
