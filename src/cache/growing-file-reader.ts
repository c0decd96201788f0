import { Readable } from "node:stream";
import { CLIENT_READ_CHUNK } from "./read-chunk.js";
import type { Download } from "./download.js";

const READ_CHUNK = CLIENT_READ_CHUNK;

/**
 * Streams bytes [start, end] of a Download's temp file as they become releasable.
 * Positional reads on the shared descriptor, so readers never disturb each other
 * or the writer; when caught up it waits for the next "progress" event.
 */
export class GrowingFileReader extends Readable {
  private position: number;
  private waiting = false;
  private reading = false;
  private readonly onProgress = (): void => {
    if (this.waiting) {
      this.waiting = false;
      this.pump();
    }
  };

  constructor(
    private readonly download: Download,
    start: number,
    private readonly end: number,
  ) {
    super({ highWaterMark: READ_CHUNK });
    this.position = start;
    download.attachReader();
    download.on("progress", this.onProgress);
  }

  override _read(): void {
    this.pump();
  }

  private pump(): void {
    if (this.reading || this.destroyed) return;
    if (this.position > this.end) {
      this.push(null);
      return;
    }
    const available = Math.min(this.download.releasable, this.end + 1);
    if (this.position >= available) {
      const failure = this.download.failed;
      if (failure) {
        this.destroy(failure);
        return;
      }
      this.waiting = true;
      return;
    }
    const length = Math.min(READ_CHUNK, available - this.position);
    const buffer = Buffer.allocUnsafe(length);
    this.reading = true;
    this.download.readAt(buffer, length, this.position, (err, bytesRead) => {
      this.reading = false;
      if (err) {
        this.destroy(err);
        return;
      }
      this.position += bytesRead;
      if (this.push(bytesRead === length ? buffer : buffer.subarray(0, bytesRead))) this.pump();
    });
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.download.off("progress", this.onProgress);
    this.download.detachReader();
    callback(err);
  }
}
