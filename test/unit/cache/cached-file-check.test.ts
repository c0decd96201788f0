import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { sendRange } from "../../../src/cache/range-sender.js";
import { CachedFileSource } from "../../../src/cache/range-source.js";

/** Serves bytes [start, end] of `file` checked against `data`'s digest; reports what the client got. */
async function serve(file: string, data: Buffer, start: number, end: number, mode: "inline" | "whole") {
  const hex = createHash("sha256").update(data).digest("hex");
  const results: boolean[] = [];
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(Buffer.from(chunk));
      callback();
    },
  });
  const outcome = new Promise<"whole" | "cut">((resolve) => {
    sink.on("finish", () => resolve("whole"));
    sink.on("error", () => resolve("cut"));
  });
  let closed = false;
  const source = new CachedFileSource(openSync(file, "r"), data.length, 64 * 1024, () => (closed = true), { algorithm: "sha256", hex, mode, onResult: (matched) => results.push(matched) });
  sendRange(source, start, end, sink);
  return { outcome: await outcome, body: Buffer.concat(chunks), results, closed: () => closed };
}

describe("a cached file checked against its digest while it is served", () => {
  const dirs: string[] = [];
  const fileWith = (bytes: Buffer): string => {
    const dir = mkdtempSync(path.join(tmpdir(), "regcache-check-"));
    dirs.push(dir);
    writeFileSync(path.join(dir, "blob"), bytes);
    return path.join(dir, "blob");
  };
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it("serves an intact file whole and reports it verified", async () => {
    const data = randomBytes(1_000_000);
    const got = await serve(fileWith(data), data, 0, data.length - 1, "inline");
    expect(got.outcome).toBe("whole");
    expect(got.body.equals(data)).toBe(true);
    expect(got.results).toEqual([true]);
    expect(got.closed()).toBe(true);
  });

  it.each([0, 500_000, 999_999])("cuts a file with byte %i flipped before its last byte, and reports it damaged", async (at) => {
    const data = randomBytes(1_000_000);
    const damaged = Buffer.from(data);
    damaged[at] = damaged[at]! ^ 0xff;
    const got = await serve(fileWith(damaged), data, 0, data.length - 1, "inline");
    expect(got.outcome).toBe("cut");
    expect(got.body.length).toBeLessThan(data.length);
    expect(got.results).toEqual([false]);
  });

  it("checks the whole file before releasing any byte of a partial range", async () => {
    const data = randomBytes(300_000);
    const intact = await serve(fileWith(data), data, 1000, 1999, "whole");
    expect(intact.outcome).toBe("whole");
    expect(intact.body.equals(data.subarray(1000, 2000))).toBe(true);
    const damaged = Buffer.from(data);
    damaged[250_000] = damaged[250_000]! ^ 1;
    const cut = await serve(fileWith(damaged), data, 1000, 1999, "whole");
    expect(cut.outcome).toBe("cut");
    expect(cut.body.length).toBe(0);
    expect(cut.results).toEqual([false]);
  });

  it("verifies an empty file", async () => {
    const got = await serve(fileWith(Buffer.alloc(0)), Buffer.alloc(0), 0, 0, "inline");
    expect(got.results).toEqual([true]);
  });
});
