import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { PassThrough, Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Download } from "../../../src/cache/download.js";
import { GrowingFileReader } from "../../../src/cache/growing-file-reader.js";
import { parseDigest } from "../../../src/registry/digest.js";

const digestOf = (data: Buffer) => parseDigest(`sha256:${createHash("sha256").update(data).digest("hex")}`)!;

describe("Download and GrowingFileReader", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), "download-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const start = (data: Buffer, body: Readable, digest = digestOf(data)) =>
    Download.start({ digest, host: "up.test", size: data.length, mediaType: "application/octet-stream", body, tempFile: path.join(dir, "tmp"), finalFile: path.join(dir, "final") });

  it("stores a verified body and serves readers that attach after completion", async () => {
    const data = randomBytes(300_000);
    const download = await start(data, Readable.from([data.subarray(0, 100_000), data.subarray(100_000)]));
    await download.done;
    expect(readFileSync(path.join(dir, "final")).equals(data)).toBe(true);
    const late = await buffer(new GrowingFileReader(download, 0, data.length - 1));
    expect(late.equals(data)).toBe(true);
  });

  it("holds back the last byte until the digest is verified", async () => {
    const data = randomBytes(50_000);
    const body = new PassThrough();
    const download = await start(data, body);
    const reader = new GrowingFileReader(download, 0, data.length - 1);
    const chunks: Buffer[] = [];
    reader.on("data", (c: Buffer) => chunks.push(c));
    body.write(data);
    await new Promise((r) => setTimeout(r, 100));
    expect(Buffer.concat(chunks).length).toBe(data.length - 1);
    body.end();
    await new Promise((r) => reader.on("end", r));
    expect(Buffer.concat(chunks).equals(data)).toBe(true);
  });

  it("fails every reader of a body whose digest is wrong, before the last byte, and leaves no file", async () => {
    const data = randomBytes(50_000);
    const download = await start(data, Readable.from([data]), digestOf(randomBytes(8)));
    const reader = new GrowingFileReader(download, 0, data.length - 1);
    const chunks: Buffer[] = [];
    reader.on("data", (c: Buffer) => chunks.push(c));
    const error = await new Promise<Error>((resolve) => reader.on("error", resolve));
    expect(error.message).toMatch(/digest mismatch from upstream up.test/);
    expect(Buffer.concat(chunks).length).toBeLessThan(data.length);
    await expect(download.done).rejects.toThrow(/digest mismatch/);
    expect(existsSync(path.join(dir, "final"))).toBe(false);
    expect(existsSync(path.join(dir, "tmp"))).toBe(false);
  });

  it("serves a range of a body still arriving", async () => {
    const data = randomBytes(200_000);
    const body = new PassThrough();
    const download = await start(data, body);
    const ranged = buffer(new GrowingFileReader(download, 150_000, 199_999));
    body.write(data.subarray(0, 120_000));
    await new Promise((r) => setTimeout(r, 20));
    body.end(data.subarray(120_000));
    expect((await ranged).equals(data.subarray(150_000))).toBe(true);
  });

  it("serves a reader that arrives after every other reader left but before the file is in place", async () => {
    const data = randomBytes(300_000);
    const download = await start(data, Readable.from([data]));
    const first = await buffer(new GrowingFileReader(download, 0, data.length - 1));
    expect(first.equals(data)).toBe(true);
    // The digest is verified (the first reader got the last byte); the fsync and rename are still pending.
    expect(download.complete).toBe(false);
    const second = await buffer(new GrowingFileReader(download, 0, data.length - 1));
    expect(second.equals(data)).toBe(true);
    await download.done;
  });
});
