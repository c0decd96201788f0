import { close, open, read } from "node:fs";
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

/** A complete file in the cache, opened on the first read. */
export class CachedFileSource implements RangeSource {
  readonly complete = true;
  readonly failure = undefined;
  private fd: number | undefined;
  private closed = false;

  constructor(
    private readonly file: string,
    readonly readableEnd: number,
    readonly chunkSize: number,
    private readonly onClose: () => void,
  ) {}

  onChange(): () => void {
    return () => undefined;
  }

  read(buffer: Buffer, length: number, position: number, callback: ReadCallback): void {
    if (this.fd !== undefined) {
      read(this.fd, buffer, 0, length, position, (err, n) => callback(err, n));
      return;
    }
    open(this.file, "r", (err, fd) => {
      if (err) return callback(err, 0);
      if (this.closed) {
        close(fd, () => undefined);
        return callback(new Error("source closed"), 0);
      }
      this.fd = fd;
      this.read(buffer, length, position, callback);
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.fd !== undefined) close(this.fd, () => undefined);
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
