import { Readable } from "node:stream";
import { RegcacheError } from "../errors.js";

/** Bytes start to end of an object, both included (an HTTP Range). */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * One ranged GET of the object: its body and the whole object's size, or undefined when the
 * object is absent. `signal` aborts a request still waiting for its answer.
 */
export type RangeGet = (range: ByteRange, signal?: AbortSignal) => Promise<{ body: Readable; size: number } | undefined>;

export interface PartPlan {
  partSize: number;
  /**
   * Parts requested and not yet handed on, at most. The parts behind the first fill up in memory
   * while the first is handed on, so a read holds about this many parts' bytes for most of its run.
   */
  partsInFlight: number;
}

/**
 * An object of known size read as consecutive ranged GETs, several at once, handed on in order
 * as one stream: S3 and the stores like it serve one connection at a fraction of what they serve
 * several (AWS's own advice for large objects is ranged GETs in parallel).
 *
 * The first part is asked for alone: an absent object answers undefined without further
 * requests, and a size other than `size` is answered as it is, with the first part's body alone,
 * for the caller to refuse (it compares against the size it expected, as for a single GET).
 * `from`: the first byte wanted (a read that continues another source's); the stream then holds
 * bytes `from` to the end.
 */
export async function readInParts(get: RangeGet, size: number, plan: PartPlan, what: string, from = 0): Promise<{ body: Readable; size: number } | undefined> {
  const first = await get(partRange(0, from, size, plan.partSize));
  if (!first) return undefined;
  if (first.size !== size) return first;
  return { body: new RangedObjectReader(get, size, from, plan, what, first.body), size };
}

function partRange(index: number, from: number, size: number, partSize: number): ByteRange {
  const start = from + index * partSize;
  return { start, end: Math.min(start + partSize, size) - 1 };
}

/** A part requested: its bytes as they arrive, until the reader has handed them all on. */
interface Part {
  range: ByteRange;
  body: Readable | undefined;
  chunks: Buffer[];
  received: number;
  ended: boolean;
}

/**
 * The stream of readInParts(). Every part's body is read as it arrives (a body left unread would
 * hit the store's idle timeout); the parts after the first one not yet handed on wait in memory,
 * and the next part is asked for only once the first is handed on whole, so memory stays within
 * partsInFlight parts whatever the reader's consumer does. Any part failing (the store's error,
 * the object gone, a size other than asked) destroys the stream with that error; destroying the
 * stream aborts the requests still waiting and destroys every part's body.
 */
class RangedObjectReader extends Readable {
  /** Parts requested and not yet handed on whole, in the object's order. */
  private readonly parts: Part[] = [];
  private readonly partCount: number;
  private nextPart = 0;
  /** Whether the consumer asked for more since push() last said to stop. */
  private wanted = false;
  /** Ends the requests still waiting for their answer when the stream is destroyed. */
  private readonly requests = new AbortController();

  constructor(
    private readonly get: RangeGet,
    private readonly size: number,
    private readonly from: number,
    private readonly plan: PartPlan,
    private readonly what: string,
    firstBody: Readable,
  ) {
    super();
    this.partCount = Math.ceil((size - from) / plan.partSize);
    this.collect(this.newPart(), firstBody);
    this.requestParts();
  }

  override _read(): void {
    this.wanted = true;
    this.handOn();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    // Read to the end, every request is done: nothing to abort.
    if (!this.readableEnded) this.requests.abort(err ?? new Error("the read was given up"));
    for (const part of this.parts) part.body?.destroy();
    this.parts.length = 0;
    callback(err);
  }

  private requestParts(): void {
    while (this.parts.length < this.plan.partsInFlight && this.nextPart < this.partCount && !this.destroyed) {
      const part = this.newPart();
      this.get(part.range, this.requests.signal).then(
        (answer) => {
          if (this.destroyed) {
            answer?.body.destroy();
          } else if (!answer) {
            this.destroy(this.failure(part, "the object is no longer in the store"));
          } else if (answer.size !== this.size) {
            answer.body.destroy();
            this.destroy(this.failure(part, `the object is now ${answer.size} bytes, not ${this.size}`));
          } else {
            this.collect(part, answer.body);
          }
        },
        (err: unknown) => this.destroy(err as Error),
      );
    }
  }

  private newPart(): Part {
    const part: Part = { range: partRange(this.nextPart, this.from, this.size, this.plan.partSize), body: undefined, chunks: [], received: 0, ended: false };
    this.nextPart += 1;
    this.parts.push(part);
    return part;
  }

  private collect(part: Part, body: Readable): void {
    part.body = body;
    const expected = part.range.end - part.range.start + 1;
    body.on("data", (chunk: Buffer) => {
      part.received += chunk.length;
      if (part.received > expected) {
        this.destroy(this.failure(part, `more than the ${expected} bytes asked for`));
        return;
      }
      part.chunks.push(chunk);
      if (part === this.parts[0]) this.handOn();
    });
    body.once("end", () => {
      if (part.received !== expected) {
        this.destroy(this.failure(part, `${part.received} bytes of the ${expected} asked for`));
        return;
      }
      part.ended = true;
      if (part === this.parts[0]) this.handOn();
    });
    body.once("error", (err) => this.destroy(err));
  }

  /** Pushes what the first part holds while the consumer wants it; a part handed on whole makes room for the next request. */
  private handOn(): void {
    while (this.wanted && !this.destroyed) {
      const head = this.parts[0];
      if (!head) {
        if (this.nextPart === this.partCount) this.push(null);
        return;
      }
      const chunk = head.chunks.shift();
      if (chunk) {
        this.wanted = this.push(chunk);
      } else if (head.ended) {
        this.parts.shift();
        this.requestParts();
      } else {
        return;
      }
    }
  }

  private failure(part: Part, reason: string): RegcacheError {
    return new RegcacheError("SHARED_STORE", `the object store's ${this.what}, bytes ${part.range.start}-${part.range.end}: ${reason}`);
  }
}
