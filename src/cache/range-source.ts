import { createHash, type Hash } from "node:crypto";
import { close, read } from "node:fs";
import type { Download } from "./download.js";

export type ReadCallback = (err: Error | null, bytesRead: number) => void;

/** Where a response body's bytes come from: positional reads of a file that may still be growing. */
export interface RangeSource {
  /** Read size for this source (see read-chunk.ts). */
  readonly chunkSize: number;
  /** Bytes below this offset may be read now; a download still arriving holds back the rest. */
  readonly readableEnd: number;
  /** readableEnd is final: every byte there is may be read. */
  readonly complete: boolean;
  /** Why no more bytes will come, once the source has failed. */
  readonly failure: Error | undefined;
  /** Calls `listener` once, when readableEnd or failure may have changed; returns a canceller. */
  onChange(listener: () => void): () => void;
  read(buffer: Buffer, length: number, position: number, callback: ReadCallback): void;
  /** Called exactly once, when the response is done with the source. */
  close(): void;
}

/** How a cached file's bytes are checked against its digest while they are served. */
export interface FileCheck {
  algorithm: string;
  hex: string;
  /**
   * inline: the response reads the file from its start; bytes are hashed as they are read and
   * the last byte is held back until the hash matches. whole: a partial range; the whole file is
   * hashed first and nothing is released before it matches.
   */
  mode: "inline" | "whole";
  /** Told once whether the file matched its digest. */
  onResult(matched: boolean, actual: string): void;
}

const CHECK_CHUNK = 1024 * 1024;

/**
 * A complete file in the cache, through a descriptor opened before the response began (so a
 * file gone from disk is a miss, not an empty 200). With a check, a file whose bytes no longer
 * match its digest (a flipped bit, a bad disk) never reaches a client complete: the response is
 * cut before its last byte, as for a download from upstream.
 */
export class CachedFileSource implements RangeSource {
  private closed = false;
  /** Reads in flight: the descriptor is closed only after them, or its number could be reused under them. */
  private pendingReads = 0;
  private verified: boolean;
  private checkFailure: Error | undefined;
  private readonly hash: Hash | undefined;
  private hashedUpTo = 0;
  private finishing = false;
  private readonly listeners = new Set<() => void>();

  constructor(
    private readonly fd: number,
    private readonly size: number,
    readonly chunkSize: number,
    private readonly onClose: () => void,
    private readonly check?: FileCheck,
  ) {
    this.verified = check === undefined;
    this.hash = check ? createHash(check.algorithm) : undefined;
    if (check?.mode === "whole" || size === 0) this.finishCheck();
  }

  get readableEnd(): number {
    if (this.verified) return this.size;
    return this.check?.mode === "inline" ? this.size - 1 : 0;
  }

  get complete(): boolean {
    return this.verified;
  }

  get failure(): Error | undefined {
    return this.checkFailure;
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    // The response has read all it may: the held-back tail is hashed now, then released or refused.
    if (this.check?.mode === "inline") this.finishCheck();
    return () => this.listeners.delete(listener);
  }

  read(buffer: Buffer, length: number, position: number, callback: ReadCallback): void {
    this.readAt(buffer, length, position, (err, n) => {
      if (!err && this.hash && !this.finishing && position === this.hashedUpTo) {
        this.hash.update(buffer.subarray(0, n));
        this.hashedUpTo += n;
      }
      callback(err, n);
    });
  }

  /** Hashes what the response has not read through (the held-back tail, or all of it). */
  private finishCheck(): void {
    if (this.finishing || !this.check || !this.hash) return;
    this.finishing = true;
    const check = this.check;
    const hash = this.hash;
    const buffer = Buffer.allocUnsafe(Math.min(CHECK_CHUNK, Math.max(1, this.size - this.hashedUpTo)));
    const settle = (err: Error | null): void => {
      if (err) this.checkFailure = err;
      else {
        const actual = hash.digest("hex");
        check.onResult(actual === check.hex, `${check.algorithm}:${actual}`);
        if (actual === check.hex) this.verified = true;
        else this.checkFailure = new Error(`cached file does not match ${check.algorithm}:${check.hex} (it hashes to ${check.algorithm}:${actual})`);
      }
      for (const listener of [...this.listeners]) listener();
      this.listeners.clear();
    };
    const next = (): void => {
      if (this.closed) return;
      if (this.hashedUpTo >= this.size) return settle(null);
      this.readAt(buffer, Math.min(buffer.length, this.size - this.hashedUpTo), this.hashedUpTo, (err, n) => {
        if (err || n === 0) return settle(err ?? new Error(`cached file shorter than ${this.size} bytes`));
        hash.update(buffer.subarray(0, n));
        this.hashedUpTo += n;
        next();
      });
    };
    next();
  }

  private readAt(buffer: Buffer, length: number, position: number, callback: ReadCallback): void {
    if (this.closed) return callback(new Error("source closed"), 0);
    this.pendingReads += 1;
    read(this.fd, buffer, 0, length, position, (err, n) => {
      this.pendingReads -= 1;
      if (this.closed && this.pendingReads === 0) close(this.fd, () => undefined);
      callback(err, n);
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.pendingReads === 0) close(this.fd, () => undefined);
    this.onClose();
  }
}

/**
 * A Download's temp file as bytes land, through the download's own descriptor, so
 * readers never disturb each other or the writer; the download decides what is releasable.
 */
export class DownloadSource implements RangeSource {
  private closed = false;

  constructor(
    private readonly download: Download,
    readonly chunkSize: number,
    private readonly onClose: () => void,
  ) {
    download.attachReader();
  }

  get readableEnd(): number {
    return this.download.releasable;
  }

  get complete(): boolean {
    return this.download.verified;
  }

  get failure(): Error | undefined {
    return this.download.failed;
  }

  onChange(listener: () => void): () => void {
    this.download.once("progress", listener);
    return () => this.download.off("progress", listener);
  }

  read(buffer: Buffer, length: number, position: number, callback: ReadCallback): void {
    this.download.readAt(buffer, length, position, callback);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.download.detachReader();
    this.onClose();
  }
}
