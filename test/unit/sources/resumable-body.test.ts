import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { ResumableBody } from "../../../src/sources/resumable-body.js";

const BYTES = randomBytes(100_000);

/** Bytes [from, to) of BYTES in 7 KiB chunks, then `end`: ended properly, ended early, failed, or closed without either. */
function source(from: number, to: number, end: "end" | "error" | "close" = "end"): Readable {
  let at = from;
  return new Readable({
    highWaterMark: 16 * 1024,
    read() {
      if (at < to) {
        const next = Math.min(at + 7 * 1024, to);
        this.push(BYTES.subarray(at, next));
        at = next;
      } else if (end === "end") this.push(null);
      else if (end === "error") this.destroy(new Error(`failed at ${at}`));
      else this.destroy();
    },
  });
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe("ResumableBody", () => {
  it("continues a source that fails, ends early or closes mid-stream from the next one, at the offset reached: one whole body", async () => {
    for (const end of ["error", "end", "close"] as const) {
      const asked: [number, string][] = [];
      const body = new ResumableBody(source(0, 30_000, end), BYTES.length, async (offset, cause) => {
        asked.push([offset, cause.message]);
        return offset === 30_000 ? source(30_000, 64_000, "error") : source(offset, BYTES.length);
      });
      expect((await readAll(body)).equals(BYTES), end).toBe(true);
      expect(asked.map(([offset]) => offset), end).toEqual([30_000, 64_000]);
      expect(asked[0]![1], end).toMatch(end === "error" ? /failed at 30000/ : /after 30000 of 100000 bytes/);
    }
  });

  it("fails with the first source's reason when no source can continue, or the continuation fails to be asked", async () => {
    for (const next of [async () => undefined, async () => Promise.reject(new Error("asking failed"))]) {
      const body = new ResumableBody(source(0, 50_000, "error"), BYTES.length, next);
      await expect(readAll(body)).rejects.toThrow("failed at 50000");
    }
  });

  it("a source that sends more than the content's size fails the body, with no continuation asked", async () => {
    let asked = 0;
    const body = new ResumableBody(source(0, BYTES.length), BYTES.length - 10, async () => {
      asked += 1;
      return undefined;
    });
    await expect(readAll(body)).rejects.toThrow(/more than the 99990 bytes/);
    expect(asked).toBe(0);
  });

  it("a source that fails after its last byte leaves nothing missing: the body ends, no continuation asked", async () => {
    let asked = 0;
    const body = new ResumableBody(source(0, BYTES.length, "error"), BYTES.length, async () => {
      asked += 1;
      return undefined;
    });
    expect((await readAll(body)).equals(BYTES)).toBe(true);
    expect(asked).toBe(0);
  });

  it("destroyed by its reader, it destroys the source in use, and a continuation that answers afterwards", async () => {
    const first = source(0, 10_000, "error");
    let answer: (rest: Readable) => void = () => undefined;
    const body = new ResumableBody(first, BYTES.length, () => new Promise((resolve) => (answer = resolve)));
    body.resume();
    await new Promise((resolve) => setTimeout(resolve, 20));
    body.destroy();
    await once(body, "close");
    expect(first.destroyed).toBe(true);
    const late = source(10_000, BYTES.length);
    answer(late);
    await new Promise((resolve) => setImmediate(resolve));
    expect(late.destroyed).toBe(true);
  });

  it("holds back a source its reader does not keep up with: at most about one buffer's worth is read ahead", async () => {
    const big = randomBytes(8 * 1024 * 1024);
    let produced = 0;
    const fast = new Readable({
      read() {
        if (produced >= big.length) return void this.push(null);
        this.push(big.subarray(produced, produced + 64 * 1024));
        produced += 64 * 1024;
      },
    });
    const body = new ResumableBody(fast, big.length, async () => undefined);
    body.on("readable", () => undefined);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(produced).toBeLessThan(3 * 1024 * 1024);
    body.destroy();
  });
});
