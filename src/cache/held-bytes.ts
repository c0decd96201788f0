import type { BlobEntry } from "./cache-index.js";
import type { ReadCallback, RangeSource } from "./range-source.js";

/**
 * Small cached files (manifests, image configs), verified against their digest once and then
 * answered from memory: a cached manifest by digest otherwise costs a stat, a hash of the whole
 * file and a read on every request, and the reads' buffers alone made V8 run a full collection
 * every ~25 ms at 250 requests/s (the ~15 ms periodic stall, bench/small-requests.ts).
 *
 * Bounded by bytes, least recently used out first. Bytes are held for one index row (the
 * BlobEntry object): a row dropped or replaced (quarantined, evicted, removed, re-indexed) no
 * longer matches, so its bytes are never served again, even before they are let go.
 */
export class HeldBytes {
  private readonly held = new Map<string, { entry: BlobEntry; bytes: Buffer }>();
  private total = 0;

  constructor(
    /** What all held files may add up to. */
    readonly maxBytes: number,
    /** Larger files are never held: one of them would push out many manifests. */
    readonly maxFileBytes: number,
  ) {}

  get size(): number {
    return this.total;
  }

  /** Whether a file of this size would be held once verified. */
  admits(size: number): boolean {
    return size <= this.maxFileBytes && size <= this.maxBytes;
  }

  /** The verified bytes of this row, if held (and marks them most recently used). */
  get(entry: BlobEntry): Buffer | undefined {
    const held = this.held.get(entry.digest);
    if (!held) return undefined;
    if (held.entry !== entry) {
      this.delete(entry.digest);
      return undefined;
    }
    this.held.delete(entry.digest);
    this.held.set(entry.digest, held);
    return held.bytes;
  }

  /** Holds `bytes`, which the caller just found to match the row's digest. */
  put(entry: BlobEntry, bytes: Buffer): void {
    if (!this.admits(bytes.length)) return;
    this.delete(entry.digest);
    this.held.set(entry.digest, { entry, bytes });
    this.total += bytes.length;
    for (const [digest] of this.held) {
      if (this.total <= this.maxBytes) break;
      this.delete(digest);
    }
  }

  /** Lets a digest's bytes go (its file was quarantined, evicted or removed). */
  delete(digest: string): void {
    const held = this.held.get(digest);
    if (!held) return;
    this.held.delete(digest);
    this.total -= held.bytes.length;
  }
}

/** Bytes held in memory as a response source: complete, verified, read without I/O. */
export class HeldBytesSource implements RangeSource {
  readonly readableEnd: number;
  readonly complete = true;
  readonly failure = undefined;
  readonly chunkSize: number;

  constructor(private readonly bytes: Buffer) {
    this.readableEnd = bytes.length;
    this.chunkSize = Math.max(1, bytes.length);
  }

  onChange(): () => void {
    // Complete from the start: nothing ever changes.
    return () => undefined;
  }

  read(buffer: Buffer, length: number, position: number, callback: ReadCallback): void {
    callback(null, this.bytes.copy(buffer, 0, position, position + length));
  }

  close(): void {}
}
