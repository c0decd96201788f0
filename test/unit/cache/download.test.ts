import { createHash, randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { PassThrough, Readable, Writable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Download } from "../../../src/cache/download.js";
import { sendRange } from "../../../src/cache/range-sender.js";
import { DownloadSource } from "../../../src/cache/range-source.js";
import { parseDigest } from "../../../src/oci/digest.js";

const CHUNK = 64 * 1024;

/**
 * fsync as Node does it, except while a test holds it: then the flush waits for `releaseFsync`,
 * so that "verified but not yet in place" lasts as long as the test needs, whatever the machine's load.
 */
const fsyncGate = vi.hoisted(() => ({ held: false, waiting: [] as (() => void)[] }));
vi.mock("node:fs", async (importOriginal) => {
  const fs = await importOriginal<typeof import("node:fs")>();
  return {
    ...fs,
    fsync: (fd: number, callback: (err: NodeJS.ErrnoException | null) => void) =>
      fsyncGate.held ? fsyncGate.waiting.push(() => fs.fsync(fd, callback)) : fs.fsync(fd, callback),
  };
});
function releaseFsync(): void {
  fsyncGate.held = false;
  for (const flush of fsyncGate.waiting.splice(0)) flush();
}

/**
 * Sends bytes [start, end] of the download to a sink that keeps copies, as a socket would send them.
 * `received(n)` resolves once the sink holds n bytes: tests wait on that, never on a clock.
 */
function read(download: Download, start: number, end: number) {
  const chunks: Buffer[] = [];
  const arrivals = new EventEmitter();
  const total = (): number => chunks.reduce((n, c) => n + c.length, 0);
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(Buffer.from(chunk));
      arrivals.emit("chunk");
      callback();
    },
  });
  const received = (n: number): Promise<void> =>
    new Promise((resolve) => {
      const check = (): void => void (total() >= n ? resolve() : arrivals.once("chunk", check));
      check();
    });
  const result = new Promise<Buffer>((resolve, reject) => {
    sink.on("finish", () => resolve(Buffer.concat(chunks)));
    sink.on("error", reject);
    sink.on("close", () => reject(new Error("closed before the end")));
  });
  sendRange(new DownloadSource(download, CHUNK, () => undefined), start, end, sink);
  return { chunks, result, received };
}

/** Resolves once the download has written n bytes to its file. */
function writtenReaches(download: Download, n: number): Promise<void> {
  return new Promise((resolve) => {
    const check = (): void => void (download.written >= n ? resolve() : download.once("progress", check));
    check();
  });
}
const digestOf = (data: Buffer) => parseDigest(`sha256:${createHash("sha256").update(data).digest("hex")}`)!;

describe("Download and its readers", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), "download-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const LIMITS = { maxBytes: 64 * 1024 * 1024, minRate: 0, rateWindowMs: 60_000, abandonedAfterMs: 60_000 };
  const start = (data: Buffer, body: Readable, digest = digestOf(data), size: number | null = data.length, limits = LIMITS) =>
    Download.start({
      digest,
      host: "up.test",
      size: size ?? undefined,
      mediaType: "application/octet-stream",
      body,
      tempFile: path.join(dir, "tmp"),
      finalFile: path.join(dir, "final"),
      limits: { ...limits, maxBytes: size ?? limits.maxBytes },
      makeRoom: async () => undefined,
    });

  it("stores a verified body and serves readers that attach after completion", async () => {
    const data = randomBytes(300_000);
    const download = await start(data, Readable.from([data.subarray(0, 100_000), data.subarray(100_000)]));
    await download.done;
    expect(readFileSync(path.join(dir, "final")).equals(data)).toBe(true);
    const late = await read(download, 0, data.length - 1).result;
    expect(late.equals(data)).toBe(true);
  });

  it("hands a growing body on in whole chunks, and holds back the last byte until the digest is verified", async () => {
    const data = randomBytes(3 * CHUNK + 3_000);
    const body = new PassThrough();
    const download = await start(data, body);
    const reader = read(download, 0, data.length - 1);
    body.write(data);
    await writtenReaches(download, data.length);
    // All but the last byte may go; of those, the part short of a whole chunk waits for the end.
    await reader.received(3 * CHUNK);
    expect(download.verified).toBe(false);
    expect(reader.chunks.map((c) => c.length)).toEqual([CHUNK, CHUNK, CHUNK]);
    body.end();
    expect((await reader.result).equals(data)).toBe(true);
  });

  it("fails every reader of a body whose digest is wrong, before the last byte, and leaves no file", async () => {
    const data = randomBytes(50_000);
    const download = await start(data, Readable.from([data]), digestOf(randomBytes(8)));
    const reader = read(download, 0, data.length - 1);
    await expect(reader.result).rejects.toThrow(/digest mismatch from upstream up.test/);
    expect(Buffer.concat(reader.chunks).length).toBeLessThan(data.length);
    await expect(download.done).rejects.toThrow(/digest mismatch/);
    expect(existsSync(path.join(dir, "final"))).toBe(false);
    expect(existsSync(path.join(dir, "tmp"))).toBe(false);
  });

  it("serves a range of a body still arriving", async () => {
    const data = randomBytes(200_000);
    const body = new PassThrough();
    const download = await start(data, body);
    const ranged = read(download, 150_000, 199_999).result;
    body.write(data.subarray(0, 120_000));
    await writtenReaches(download, 120_000);
    body.end(data.subarray(120_000));
    expect((await ranged).equals(data.subarray(150_000))).toBe(true);
  });

  it("serves a reader that arrives after every other reader left but before the file is in place", async () => {
    const data = randomBytes(300_000);
    fsyncGate.held = true;
    try {
      const download = await start(data, Readable.from([data]));
      const first = await read(download, 0, data.length - 1).result;
      expect(first.equals(data)).toBe(true);
      // The digest is verified (the first reader got the last byte); the fsync and rename are still pending.
      expect(download.complete).toBe(false);
      const second = await read(download, 0, data.length - 1).result;
      expect(second.equals(data)).toBe(true);
      releaseFsync();
      await download.done;
    } finally {
      releaseFsync();
    }
  });

  it("reuses a buffer only after the sink has written it out, however slowly", async () => {
    const data = randomBytes(1_000_000);
    const download = await start(data, Readable.from([data]));
    await download.done;
    const received: Buffer[] = [];
    let closed = 0;
    // Holds each chunk by reference for a while before copying it, as a socket with a full buffer does.
    const sink = new Writable({
      highWaterMark: 16 * 1024 * 1024,
      write(chunk: Buffer, _encoding, callback) {
        setTimeout(() => {
          received.push(Buffer.from(chunk));
          callback();
        }, 2);
      },
    });
    const finished = new Promise((resolve) => sink.on("finish", resolve));
    let sourceClosed: () => void = () => undefined;
    const closedOnce = new Promise<void>((resolve) => (sourceClosed = resolve));
    sendRange(new DownloadSource(download, CHUNK, () => (closed += 1, sourceClosed())), 0, data.length - 1, sink);
    await finished;
    expect(Buffer.concat(received).equals(data)).toBe(true);
    await closedOnce;
    expect(closed).toBe(1);
  });

  it("ends a body of unknown length (no Content-Length upstream) where the verified download ends", async () => {
    const data = randomBytes(200_000);
    const body = new PassThrough();
    const download = await start(data, body, digestOf(data), null);
    const reader = read(download, 0, Number.MAX_SAFE_INTEGER - 1);
    body.write(data.subarray(0, 150_000));
    await writtenReaches(download, 150_000);
    await reader.received(2 * CHUNK);
    expect(Buffer.concat(reader.chunks).length).toBe(2 * CHUNK);
    body.end(data.subarray(150_000));
    expect((await reader.result).equals(data)).toBe(true);
  });

  it("cuts a body that sends more than its declared length, and keeps nothing", async () => {
    const data = randomBytes(100_000);
    const body = new PassThrough();
    const download = await start(data, body);
    const reader = read(download, 0, data.length - 1);
    const outcome = reader.result.then(() => "whole", () => "cut");
    body.write(data);
    body.write(randomBytes(10));
    await expect(download.done).rejects.toThrow(/more than 100000 bytes \(the declared length\)/);
    expect(await outcome).toBe("cut");
    expect(existsSync(path.join(dir, "final"))).toBe(false);
    expect(existsSync(path.join(dir, "tmp"))).toBe(false);
  });

  it("cuts an endless body of undeclared length at the size cap", async () => {
    const data = randomBytes(10);
    let sent = 0;
    const endless = new Readable({
      read() {
        sent += 64 * 1024;
        this.push(randomBytes(64 * 1024));
      },
    });
    const download = await start(data, endless, digestOf(data), null, { ...LIMITS, maxBytes: 1024 * 1024 });
    await expect(download.done).rejects.toThrow(/the size cap/);
    expect(download.written).toBeLessThanOrEqual(1024 * 1024);
    expect(sent).toBeLessThan(4 * 1024 * 1024);
  });

  it("aborts a download slower than the minimum rate over the window", async () => {
    const data = randomBytes(1_000_000);
    const body = new PassThrough();
    const download = await start(data, body, digestOf(data), data.length, { ...LIMITS, minRate: 100_000, rateWindowMs: 600 });
    body.write(data.subarray(0, 1000));
    await expect(download.done).rejects.toThrow(/bytes\/s over 0.6 s, below the minimum of 100000/);
  });

  it("aborts a download nobody reads any more when it is far from done, and keeps one that is half done", async () => {
    const data = randomBytes(1_000_000);
    const farBody = new PassThrough();
    const far = await start(data, farBody, digestOf(data), data.length, { ...LIMITS, abandonedAfterMs: 100 });
    farBody.write(data.subarray(0, 100_000));
    far.hold()();
    await expect(far.done).rejects.toThrow(/no client is waiting for it/);

    rmSync(path.join(dir, "tmp"), { force: true });
    const nearBody = new PassThrough();
    const near = await start(data, nearBody, digestOf(data), data.length, { ...LIMITS, abandonedAfterMs: 100 });
    nearBody.write(data.subarray(0, 900_000));
    await writtenReaches(near, 900_000);
    // The abandon check runs on a faked clock, at once: an abort would destroy the body there and then.
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    try {
      near.hold()();
      vi.advanceTimersByTime(1_000);
      expect(nearBody.destroyed).toBe(false);
    } finally {
      vi.useRealTimers();
    }
    nearBody.end(data.subarray(900_000));
    await near.done;
  });
});
