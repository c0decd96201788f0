import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { RegcacheError } from "../../../src/errors.js";
import { readInParts, type ByteRange, type PartPlan } from "../../../src/fleet/ranged-object-reader.js";

const PLAN: PartPlan = { partSize: 1000, partsInFlight: 3 };

/** A body that hands out `bytes` in small chunks, as a socket would. */
function bodyOf(bytes: Buffer, chunk = 300): Readable {
  let at = 0;
  return new Readable({
    read() {
      if (at >= bytes.length) return void this.push(null);
      this.push(bytes.subarray(at, at + chunk));
      at += chunk;
    },
  });
}

/** A body that sends nothing until the test pushes to it. */
function silentBody(): Readable {
  return new Readable({ read() {} });
}

/**
 * An object store holding one object, answering ranged GETs. `answer` lets a test replace the
 * answer to a range (a wrong body, a failure, an answer that comes late).
 */
class FakeStore {
  readonly requests: ByteRange[] = [];
  readonly bodies: Readable[] = [];
  answer: (range: ByteRange) => Promise<{ body: Readable; size: number } | undefined> = async (range) => ({
    body: bodyOf(this.bytes.subarray(range.start, range.end + 1)),
    size: this.bytes.length,
  });

  constructor(readonly bytes: Buffer) {}

  readonly signals: (AbortSignal | undefined)[] = [];

  readonly get = async (range: ByteRange, signal?: AbortSignal) => {
    this.requests.push(range);
    this.signals.push(signal);
    const answered = await this.answer(range);
    if (answered) this.bodies.push(answered.body);
    return answered;
  };
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function failureOf(stream: Readable): Promise<Error> {
  return readAll(stream).then(
    () => {
      throw new Error("the stream ended without an error");
    },
    (err: unknown) => err as Error,
  );
}

/** Lets the fake store's pending answers and bodies move. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

async function open(store: FakeStore, size = store.bytes.length, plan = PLAN) {
  const opened = await readInParts(store.get, size, plan, "sha256:abc");
  if (!opened) throw new Error("readInParts answered undefined");
  return opened;
}

describe("readInParts", () => {
  it("hands on the object's bytes in order, whatever order the parts arrive in", async () => {
    for (const size of [1000, 3000, 3001, 7999, 10_000]) {
      const store = new FakeStore(randomBytes(size));
      // Later parts answer first.
      store.answer = async (range) => {
        await new Promise((resolve) => setTimeout(resolve, 20 - range.start / 1000));
        return { body: bodyOf(store.bytes.subarray(range.start, range.end + 1)), size };
      };
      const opened = await open(store);
      expect(opened.size).toBe(size);
      expect((await readAll(opened.body)).equals(store.bytes), `size ${size}`).toBe(true);
      const parts = Math.ceil(size / 1000);
      expect(store.requests).toEqual(Array.from({ length: parts }, (_, i) => ({ start: i * 1000, end: Math.min((i + 1) * 1000, size) - 1 })));
    }
  });

  it("from an offset (continuing another source's read), hands on the bytes from there to the end, in parts counted from there", async () => {
    const store = new FakeStore(randomBytes(7_500));
    const opened = await readInParts(store.get, 7_500, PLAN, "sha256:abc", 2_345);
    expect(opened?.size).toBe(7_500);
    expect((await readAll(opened!.body)).equals(store.bytes.subarray(2_345))).toBe(true);
    expect(store.requests).toEqual([
      { start: 2_345, end: 3_344 },
      { start: 3_345, end: 4_344 },
      { start: 4_345, end: 5_344 },
      { start: 5_345, end: 6_344 },
      { start: 6_345, end: 7_344 },
      { start: 7_345, end: 7_499 },
    ]);
  });

  it("asks for no more than partsInFlight parts ahead of what was read: unread, it holds at most that many parts", async () => {
    const store = new FakeStore(randomBytes(20_000));
    const opened = await open(store);
    for (let i = 0; i < 5; i++) await settle();
    expect(store.requests).toHaveLength(PLAN.partsInFlight);
    // Reading resumes the requests, still in order, to the end; a read to the end aborts nothing.
    expect((await readAll(opened.body)).equals(store.bytes)).toBe(true);
    expect(store.requests).toHaveLength(20);
    expect(store.signals.some((signal) => signal?.aborted)).toBe(false);
  });

  it("answers undefined for an absent object, after one request", async () => {
    const store = new FakeStore(randomBytes(5000));
    store.answer = async () => undefined;
    expect(await readInParts(store.get, 5000, PLAN, "sha256:abc")).toBeUndefined();
    expect(store.requests).toHaveLength(1);
  });

  it("answers a size other than expected as it is, asking for nothing more, for the caller to refuse", async () => {
    const store = new FakeStore(randomBytes(5000));
    const opened = await readInParts(store.get, 6000, PLAN, "sha256:abc");
    expect(opened?.size).toBe(5000);
    opened?.body.destroy();
    expect(store.requests).toHaveLength(1);
  });

  it("a first part that fails rejects, as a single GET would", async () => {
    const store = new FakeStore(randomBytes(5000));
    store.answer = async () => {
      throw new RegcacheError("SHARED_STORE", "the store is down");
    };
    await expect(readInParts(store.get, 5000, PLAN, "sha256:abc")).rejects.toThrow("the store is down");
  });

  it("any later part failing, absent, resized, short or long destroys the stream with a SHARED_STORE error, and the other parts' bodies", async () => {
    const cases: [string, (store: FakeStore, range: ByteRange) => Promise<{ body: Readable; size: number } | undefined>, RegExp][] = [
      [
        "the store's error",
        async () => {
          throw new RegcacheError("SHARED_STORE", "GET failed: the store answered 503");
        },
        /answered 503/,
      ],
      ["absent", async () => undefined, /bytes 2000-2999: the object is no longer in the store/],
      ["resized", async (store, range) => ({ body: bodyOf(store.bytes.subarray(range.start, range.end + 1)), size: 9999 }), /bytes 2000-2999: the object is now 9999 bytes, not 5000/],
      ["short", async (store, range) => ({ body: bodyOf(store.bytes.subarray(range.start, range.end)), size: 5000 }), /bytes 2000-2999: 999 bytes of the 1000 asked for/],
      ["long", async (store, range) => ({ body: bodyOf(store.bytes.subarray(range.start, range.end + 2)), size: 5000 }), /bytes 2000-2999: more than the 1000 bytes asked for/],
      [
        "an error mid-body",
        async (store, range) => {
          const body = silentBody();
          body.push(store.bytes.subarray(range.start, range.start + 500));
          setImmediate(() => body.destroy(new RegcacheError("SHARED_STORE", "while reading the body: socket hang up")));
          return { body, size: 5000 };
        },
        /while reading the body: socket hang up/,
      ],
    ];
    for (const [name, answer, message] of cases) {
      const store = new FakeStore(randomBytes(5000));
      const plain = store.answer;
      // The part after the failing one never sends: the failure must not wait on it.
      store.answer = async (range) => (range.start === 2000 ? answer(store, range) : range.start === 3000 ? { body: silentBody(), size: 5000 } : plain(range));
      const opened = await open(store);
      const err = await failureOf(opened.body);
      expect(err, name).toBeInstanceOf(RegcacheError);
      expect((err as RegcacheError).code, name).toBe("SHARED_STORE");
      expect(err.message, name).toMatch(message);
      await settle();
      expect(store.bodies.every((b) => b.destroyed || b.readableEnded), name).toBe(true);
    }
  });

  it("destroyed by its reader, it aborts the requests still waiting, destroys every part's body, and a part answered afterwards", async () => {
    const store = new FakeStore(randomBytes(5000));
    let answerLate: (() => void) | undefined;
    const late = silentBody();
    store.answer = async (range) => {
      if (range.start === 2000) {
        await new Promise<void>((resolve) => (answerLate = resolve));
        return { body: late, size: 5000 };
      }
      return { body: silentBody(), size: 5000 };
    };
    const opened = await open(store);
    await settle();
    expect(store.requests).toHaveLength(3);
    expect(store.signals[2]?.aborted).toBe(false);
    opened.body.destroy();
    await once(opened.body, "close");
    expect(store.signals[2]?.aborted).toBe(true);
    expect(store.bodies.every((b) => b.destroyed)).toBe(true);
    answerLate!();
    await settle();
    expect(late.destroyed).toBe(true);
    expect(store.requests).toHaveLength(3);
  });
});
