import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Readable } from "node:stream";
import { HeadObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RegcacheError } from "../../src/errors.js";
import { S3ObjectStore } from "../../src/fleet/s3-object-store.js";
import { S3Transport } from "../../src/fleet/s3-transport.js";
import { createLogger } from "../../src/log/logger.js";
import { parseDigest, type Digest } from "../../src/oci/digest.js";
import { SWIFT_CREDENTIALS, SWIFT_REGION, SWIFT_TOOLS, swiftCredentialsInEnv, TestSwift } from "./harness/swift.js";
import { missingTools } from "./harness/tools.js";

const missing = missingTools(...SWIFT_TOOLS);

/** What the store is configured with here; every "prompt" bound below is a few of these. */
const TIMEOUTS = { connectMs: 1_000, requestMs: 2_000, answerMs: 3_000 };
const MANIFEST = "application/vnd.oci.image.manifest.v1+json";
/** Far above what the timeouts allow (two attempts of 2 s), far below a hang. */
const PROMPT_MS = 15_000;
const WRONG_SECRET = "wrong-secret-5f0c2a9e";
const MiB = 1024 * 1024;
/** The store's part size (S3ObjectStore's UPLOAD_PLAN): files from it up whose digest is not a SHA-256 go as multipart uploads. */
const PART = 16 * MiB;
/** Six parts, the last short: more than the 4 sent at once. */
const SIX_PARTS = 5 * PART + 12_345;

interface Blob {
  digest: Digest;
  file: string;
  bytes: Buffer;
}

function readAll(stream: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.once("end", () => resolve(Buffer.concat(chunks)));
    stream.once("error", reject);
  });
}

/** How long `work` took to fail, and its error. */
async function failure(work: () => Promise<unknown>): Promise<{ err: unknown; ms: number }> {
  const started = Date.now();
  try {
    await work();
  } catch (err) {
    return { err, ms: Date.now() - started };
  }
  throw new Error("expected a failure");
}

function expectSharedStoreError(err: unknown): asserts err is RegcacheError {
  expect(err).toBeInstanceOf(RegcacheError);
  expect((err as RegcacheError).code).toBe("SHARED_STORE");
}

describe.skipIf(missing.length > 0)("S3ObjectStore against a real S3-compatible store (Swift with s3api)", () => {
  let dir: string;
  let swift: TestSwift;
  let raw: S3Client;
  let small: Blob;
  let large: Blob;
  let wholeLarge: Blob;
  const logLines: string[] = [];
  let restoreEnv: (() => void) | undefined;

  function blob(name: string, size: number, algorithm: "sha256" | "sha512" = "sha256"): Blob {
    const bytes = randomBytes(size);
    const file = path.join(dir, name);
    writeFileSync(file, bytes);
    return { digest: parseDigest(`${algorithm}:${createHash(algorithm).update(bytes).digest("hex")}`)!, file, bytes };
  }

  function store(prefix = "fleet/a"): S3ObjectStore {
    const logger = createLogger("debug", { write: (line: string) => void logLines.push(line) });
    return new S3ObjectStore({ bucket: swift.bucket, prefix, endpoint: swift.endpoint, forcePathStyle: true, region: SWIFT_REGION, timeouts: TIMEOUTS }, logger);
  }

  function keyOf(prefix: string, digest: Digest): string {
    return `${prefix}/blobs/${digest.algorithm}/${digest.hex.slice(0, 2)}/${digest.hex}`;
  }

  /** The multipart uploads begun under a prefix and neither completed nor aborted. */
  async function unfinishedUploads(prefix: string): Promise<string[]> {
    const answer = await raw.send(new ListMultipartUploadsCommand({ Bucket: swift.bucket, Prefix: `${prefix}/` }));
    return (answer.Uploads ?? []).map((u) => u.Key!);
  }

  /** Resolves once the store has begun a multipart upload for `key` (CreateMultipartUpload answered): its parts come next. */
  async function uploadBegun(prefix: string, key: string): Promise<void> {
    while (!(await unfinishedUploads(prefix)).includes(key)) await new Promise((resolve) => setTimeout(resolve, 10));
  }

  /** The hash (the digest's algorithm) of what a GET of the blob answers, and the size it announced. */
  async function stored(s3: S3ObjectStore, digest: Digest): Promise<{ size: number | undefined; hex: string }> {
    const answer = await s3.get(digest);
    const hash = createHash(digest.algorithm);
    if (answer) for await (const chunk of answer.body) hash.update(chunk as Buffer);
    return { size: answer?.size, hex: hash.digest("hex") };
  }

  /** A key written around the store, as another tool or a bug would. */
  async function putRaw(key: string): Promise<void> {
    await raw.send(new PutObjectCommand({ Bucket: swift.bucket, Key: key, Body: "junk" }));
  }

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "regcache-s3-"));
    swift = new TestSwift(path.join(dir, "swift"));
    await swift.start();
    raw = new S3Client(swift.clientConfig());
    restoreEnv = swiftCredentialsInEnv();
    small = blob("small", 100_000);
    // Over two 16 MiB parts: a SHA-512 blob goes as a multipart upload, with a short last part.
    large = blob("large", 40 * 1024 * 1024, "sha512");
    // A SHA-256 blob of the same size goes in one PUT, signed with its digest.
    wholeLarge = blob("whole-large", 40 * 1024 * 1024);
  });

  afterAll(async () => {
    raw?.destroy();
    await swift?.stop();
    restoreEnv?.();
    if (dir && process.env.REGCACHE_KEEP_TEST_DIRS !== "1") rmSync(dir, { recursive: true, force: true });
  });

  it("puts small and multipart blobs at the data directory's layout, and gets them back whole and in ranges", async () => {
    const s3 = store();
    try {
      await s3.put(small.digest, small.file, small.bytes.length, "application/octet-stream");
      await s3.put(large.digest, large.file, large.bytes.length, MANIFEST);
      await s3.put(wholeLarge.digest, wholeLarge.file, wholeLarge.bytes.length, "application/octet-stream");

      const key = `fleet/a/blobs/sha512/${large.digest.hex.slice(0, 2)}/${large.digest.hex}`;
      const stored = await raw.send(new HeadObjectCommand({ Bucket: swift.bucket, Key: key }));
      expect(stored.ContentLength).toBe(large.bytes.length);

      expect((await s3.head(small.digest))?.size).toBe(small.bytes.length);
      expect((await s3.head(large.digest))?.size).toBe(large.bytes.length);
      // The media type travels as Content-Type: a manifest found by HEAD while the index is down is served as what it is.
      expect(await s3.head(large.digest)).toEqual({ size: large.bytes.length, mediaType: MANIFEST });

      for (const b of [small, large, wholeLarge]) {
        const whole = await s3.get(b.digest);
        expect(whole?.size).toBe(b.bytes.length);
        expect((await readAll(whole!.body)).equals(b.bytes)).toBe(true);
      }

      const partEdge = 16 * 1024 * 1024;
      const ranges: [Blob, number, number][] = [
        [small, 0, 0],
        [small, 10, 99],
        [small, small.bytes.length - 1, small.bytes.length - 1],
        [large, partEdge - 10, partEdge + 10],
        [large, 1_000, 30_000_000],
      ];
      for (const [b, start, end] of ranges) {
        const part = await s3.get(b.digest, { start, end });
        expect(part?.size, `size for ${start}-${end}`).toBe(b.bytes.length);
        expect((await readAll(part!.body)).equals(b.bytes.subarray(start, end + 1)), `bytes ${start}-${end}`).toBe(true);
      }
    } finally {
      s3.close();
    }
  });

  it("a file whose bytes are no longer its blob's is refused by the store, not kept under the blob's key", async () => {
    const s3 = store("fleet/changed");
    try {
      for (const original of [blob("changed-small", 100_000), blob("changed-large", 20 * 1024 * 1024)]) {
        // A bit flipped on disk after the blob was verified: same size, other bytes.
        const changed = Buffer.from(original.bytes);
        changed[changed.length >> 1]! ^= 1;
        writeFileSync(original.file, changed);
        const err = await s3.put(original.digest, original.file, changed.length, "application/octet-stream").then(() => undefined, (e: unknown) => e);
        expect(err, `${changed.length} bytes`).toBeInstanceOf(RegcacheError);
        expect((err as RegcacheError).code).toBe("SHARED_STORE");
        expect(await s3.head(original.digest)).toBeUndefined();
      }
    } finally {
      s3.close();
    }
  });

  it("answers undefined for an absent blob, and the empty prefix keys from the bucket's root", async () => {
    const s3 = store();
    const root = store("");
    try {
      const absent = parseDigest(`sha256:${"0".repeat(64)}`)!;
      expect(await s3.head(absent)).toBeUndefined();
      expect(await s3.get(absent)).toBeUndefined();
      expect(await s3.get(absent, { start: 0, end: 9 })).toBeUndefined();
      // Another prefix is another store.
      expect(await root.head(small.digest)).toBeUndefined();

      await root.put(small.digest, small.file, small.bytes.length, "application/octet-stream");
      const key = `blobs/sha256/${small.digest.hex.slice(0, 2)}/${small.digest.hex}`;
      expect((await raw.send(new HeadObjectCommand({ Bucket: swift.bucket, Key: key }))).ContentLength).toBe(small.bytes.length);
      await root.delete(small.digest);
    } finally {
      s3.close();
      root.close();
    }
  });

  it("a prefix with characters that need escaping (space, +, %, non-ASCII) is signed as sent: put, HEAD, GET, list page by page, delete", async () => {
    // 103 bytes to a key: Swift's continuation token (the key in base64) ends in "==", which must be escaped.
    const prefix = "fleet/a b+c%41(ü€)!";
    const s3 = store(prefix);
    // Reads as the store sends them (its transport), a page of one key at a time: each continuation token goes back in the query.
    const pager = new S3Client({ ...swift.clientConfig(), requestHandler: new S3Transport({ connectMs: TIMEOUTS.connectMs, idleMs: TIMEOUTS.requestMs }) });
    const other = blob("odd-prefix", 1_000);
    try {
      for (const b of [small, other]) await s3.put(b.digest, b.file, b.bytes.length, "application/octet-stream");
      expect((await raw.send(new HeadObjectCommand({ Bucket: swift.bucket, Key: keyOf(prefix, small.digest) }))).ContentLength).toBe(small.bytes.length);
      expect((await s3.head(other.digest))?.size).toBe(other.bytes.length);
      const part = await s3.get(small.digest, { start: 10, end: 99 });
      expect((await readAll(part!.body)).equals(small.bytes.subarray(10, 100))).toBe(true);

      const listed: string[] = [];
      for await (const object of s3.list()) listed.push(object.digest);
      expect(listed.sort()).toEqual([small.digest.value, other.digest.value].sort());

      const keys: string[] = [];
      const tokens: string[] = [];
      let token: string | undefined;
      do {
        const page = await pager.send(new ListObjectsV2Command({ Bucket: swift.bucket, Prefix: `${prefix}/`, MaxKeys: 1, ContinuationToken: token }));
        keys.push(...(page.Contents ?? []).map((c) => c.Key!));
        token = page.NextContinuationToken;
        if (token !== undefined) tokens.push(token);
      } while (token !== undefined);
      expect(keys.sort()).toEqual([keyOf(prefix, small.digest), keyOf(prefix, other.digest)].sort());
      expect(tokens.some((t) => encodeURIComponent(t) !== t), `a token that needs escaping: ${JSON.stringify(tokens)}`).toBe(true);

      for (const b of [small, other]) await s3.delete(b.digest);
      expect(await s3.head(small.digest)).toBeUndefined();
      expect(await s3.get(other.digest)).toBeUndefined();
    } finally {
      pager.destroy();
      s3.close();
    }
  });

  it("lists the blobs under its prefix, ignoring keys that are not blobs", async () => {
    const s3 = store();
    try {
      const hex = small.digest.hex;
      await putRaw(`fleet/a/blobs/sha256/${hex.slice(0, 2)}/not-a-digest`);
      await putRaw(`fleet/a/blobs/sha256/zz/${hex}`);
      await putRaw(`fleet/a/blobs/md5/${hex.slice(0, 2)}/${hex}`);
      await putRaw(`fleet/a/blobs/sha256/${hex.slice(0, 2)}/${hex}/extra`);
      await putRaw(`fleet/a/blobs/sha256/${hex.slice(0, 2)}/${hex.toUpperCase()}`);
      await putRaw("fleet/a/README");
      await putRaw(`fleet/b/blobs/sha256/${hex.slice(0, 2)}/${"1".repeat(64)}`);

      const listed = [];
      for await (const object of s3.list()) listed.push(object);
      expect(listed.map((o) => [o.digest, o.size]).sort()).toEqual(
        [
          [small.digest.value, small.bytes.length],
          [large.digest.value, large.bytes.length],
          [wholeLarge.digest.value, wholeLarge.bytes.length],
        ].sort(),
      );
      for (const o of listed) expect(Math.abs(o.lastModified - Date.now())).toBeLessThan(10 * 60_000);
    } finally {
      s3.close();
    }
  });

  it("lists past a page (the store answers 1000 keys at a time)", async () => {
    const s3 = store("fleet/many");
    try {
      const digests = Array.from({ length: 1_050 }, (_, i) => createHash("sha256").update(String(i)).digest("hex"));
      // Keys only: the store lists names, it does not look at the bytes.
      const queue = [...digests];
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          for (let hex = queue.pop(); hex !== undefined; hex = queue.pop()) await putRaw(`fleet/many/blobs/sha256/${hex.slice(0, 2)}/${hex}`);
        }),
      );
      const firstPage = await raw.send(new ListObjectsV2Command({ Bucket: swift.bucket, Prefix: "fleet/many/" }));
      expect(firstPage.IsTruncated, "one page holds them all: this test would not test paging").toBe(true);
      const listed = new Set<string>();
      for await (const object of s3.list()) listed.add(object.digest);
      expect(listed).toEqual(new Set(digests.map((hex) => `sha256:${hex}`)));
    } finally {
      s3.close();
    }
  });

  it("deletes, and deleting what is gone is not an error", async () => {
    const s3 = store();
    try {
      await s3.delete(small.digest);
      expect(await s3.head(small.digest)).toBeUndefined();
      expect(await s3.get(small.digest)).toBeUndefined();
      await s3.delete(small.digest);
      await s3.put(small.digest, small.file, small.bytes.length, "application/octet-stream");
      expect((await s3.head(small.digest))?.size).toBe(small.bytes.length);
    } finally {
      s3.close();
    }
  });

  it("a GET its caller aborts while the store has not answered rejects with the caller's reason, not as the store's failure", async () => {
    const s3 = store();
    const caller = new AbortController();
    const givenUp = new Error("the reader was destroyed");
    try {
      swift.pause();
      const pending = s3.get(large.digest, { start: 0, end: 1023 }, caller.signal);
      setImmediate(() => caller.abort(givenUp));
      await expect(pending).rejects.toBe(givenUp);
      swift.resume();
      const part = await s3.get(large.digest, { start: 0, end: 1023 }, new AbortController().signal);
      expect((await readAll(part!.body)).equals(large.bytes.subarray(0, 1024))).toBe(true);
    } finally {
      swift.resume();
      s3.close();
    }
  });

  it("a file that cannot be read is the local disk's failure, at once", async () => {
    const s3 = store();
    try {
      const { err, ms } = await failure(() => s3.put(small.digest, path.join(dir, "no-such-file"), 10, "application/octet-stream"));
      expect((err as RegcacheError).code).toBe("CACHE_IO");
      expect((err as Error).message).toContain("no-such-file");
      expect(ms).toBeLessThan(1_000);
    } finally {
      s3.close();
    }
  });

  it("with a wrong secret every method rejects with SHARED_STORE, and neither the message nor the log holds the secret", async () => {
    process.env.AWS_SECRET_ACCESS_KEY = WRONG_SECRET;
    const s3 = store();
    logLines.length = 0;
    try {
      const attempts: [string, () => Promise<unknown>][] = [
        ["head", () => s3.head(large.digest)],
        ["get", () => s3.get(large.digest)],
        ["put", () => s3.put(small.digest, small.file, small.bytes.length, "application/octet-stream")],
        ["put multipart", () => s3.put(large.digest, large.file, large.bytes.length, MANIFEST)],
        ["delete", () => s3.delete(small.digest)],
        ["list", async () => { for await (const _ of s3.list()) void _; }],
      ];
      for (const [name, attempt] of attempts) {
        const { err } = await failure(attempt);
        expectSharedStoreError(err);
        expect(err.message, name).toContain(swift.endpoint);
        expect(err.message, name).toContain(swift.bucket);
        expect(err.message, name).toMatch(/answered 403/);
        expect(err.message, name).not.toContain(WRONG_SECRET);
        expect(String(err.stack), name).not.toContain(WRONG_SECRET);
      }
      expect(logLines.join("")).not.toContain(WRONG_SECRET);
    } finally {
      s3.close();
      process.env.AWS_SECRET_ACCESS_KEY = SWIFT_CREDENTIALS.secretAccessKey;
    }
    expect((await store().head(large.digest))?.size).toBe(large.bytes.length);
  });

  it("stores each size around the part size byte for byte, in one PUT (SHA-256) and in parts (SHA-512): none, a byte short of a part, one and two whole parts, a 1-byte last part, six parts", async () => {
    const s3 = store("fleet/edges");
    try {
      for (const algorithm of ["sha256", "sha512"] as const) {
        for (const size of [0, PART - 1, PART, PART + 1, 2 * PART, SIX_PARTS]) {
          const b = blob(`edge-${size}`, size, algorithm);
          await s3.put(b.digest, b.file, size, "application/octet-stream");
          expect(await stored(s3, b.digest), `${algorithm}, ${size} bytes`).toEqual({ size, hex: b.digest.hex });
        }
      }
      expect(await unfinishedUploads("fleet/edges")).toEqual([]);
    } finally {
      s3.close();
    }
  });

  it("a file shorter than its size (truncated under the upload) fails the upload, which is aborted: the store keeps none of its parts", async () => {
    const s3 = store("fleet/short");
    try {
      const b = blob("short", 2 * PART + 100, "sha512");
      // Parts 1 and 2 are read and sent whole; part 3 finds the end of the file.
      const { err } = await failure(() => s3.put(b.digest, b.file, SIX_PARTS, "application/octet-stream"));
      expectSharedStoreError(err);
      expect(err.message).toMatch(/the file ended at byte 33554532/);
      expect(await unfinishedUploads("fleet/short")).toEqual([]);
      expect(await s3.head(b.digest)).toBeUndefined();
      // In one PUT, the body ends short of its Content-Length: the store waits for the rest until the idle timeout.
      const whole = blob("short-whole", 2 * PART + 100);
      expectSharedStoreError((await failure(() => s3.put(whole.digest, whole.file, SIX_PARTS, "application/octet-stream"))).err);
      expect(await s3.head(whole.digest)).toBeUndefined();
    } finally {
      s3.close();
    }
  });

  it("a store that stalls in the middle of a multipart upload fails it within the timeouts, and a store killed in the middle of one too", async () => {
    const s3 = store("fleet/cut");
    const b = blob("cut", SIX_PARTS, "sha512");
    const key = keyOf("fleet/cut", b.digest);
    try {
      for (const cut of [() => swift.pause(), () => swift.kill()]) {
        const started = Date.now();
        const upload = failure(() => s3.put(b.digest, b.file, SIX_PARTS, "application/octet-stream"));
        await uploadBegun("fleet/cut", key);
        await cut();
        const { err } = await upload;
        expectSharedStoreError(err);
        expect(err.message).toContain(`upload of ${b.digest.value}`);
        // Parts in flight time out (two attempts each, all at once), then the abort does.
        expect(Date.now() - started).toBeLessThan(2 * PROMPT_MS);
        swift.resume();
      }
      await swift.restart();
      // As the upload queue's next attempt would: the blob is stored whole once the store is back.
      await s3.put(b.digest, b.file, SIX_PARTS, "application/octet-stream");
      expect(await stored(s3, b.digest)).toEqual({ size: SIX_PARTS, hex: b.digest.hex });
    } finally {
      swift.resume();
      s3.close();
    }
  });

  it("a store that stops reading a whole-object PUT fails it within the timeouts (the SDK does not resend a stream), and the next attempt stores it", async () => {
    const s3 = store("fleet/stalled-put");
    try {
      // Its connection is accepted (the kernel's backlog) and its body written until the socket's buffers are full: 40 MiB do not fit.
      swift.pause();
      const { err, ms } = await failure(() => s3.put(wholeLarge.digest, wholeLarge.file, wholeLarge.bytes.length, "application/octet-stream"));
      expectSharedStoreError(err);
      expect(err.message).toContain(`upload of ${wholeLarge.digest.value}`);
      expect(ms).toBeLessThan(PROMPT_MS);
      swift.resume();
      await s3.put(wholeLarge.digest, wholeLarge.file, wholeLarge.bytes.length, "application/octet-stream");
      expect(await stored(s3, wholeLarge.digest)).toEqual({ size: wholeLarge.bytes.length, hex: wholeLarge.digest.hex });
    } finally {
      swift.resume();
      s3.close();
    }
  });

  it("a stalled store (its S3 front stopped) fails a request, and a body already flowing, within the timeouts", async () => {
    const s3 = store();
    try {
      swift.pause();
      const { err, ms } = await failure(() => s3.get(large.digest));
      expectSharedStoreError(err);
      // The answer's deadline (3 s) comes before two attempts' idle timeouts (2 × 2 s) would.
      expect(err.message).toMatch(/no answer within 3000 ms/);
      expect(ms).toBeLessThan(PROMPT_MS);
      swift.resume();

      const answer = await s3.get(large.digest);
      const body = answer!.body;
      await new Promise((resolve) => body.once("readable", resolve));
      swift.pause();
      const started = Date.now();
      const streamErr = await readAll(body).then(
        () => new Error("the body ended although the store stalled"),
        (e: unknown) => e,
      );
      expectSharedStoreError(streamErr);
      expect(streamErr.message).toMatch(/while reading the body/);
      expect(Date.now() - started).toBeLessThan(PROMPT_MS);
    } finally {
      swift.resume();
      s3.close();
    }
  });

  it("a store that is down fails every method promptly with SHARED_STORE, and a body in flight errors", async () => {
    const s3 = store();
    try {
      const answer = await s3.get(large.digest);
      const body = answer!.body;
      await new Promise((resolve) => body.once("readable", resolve));
      // Settled into a value at once: the body fails while kill() is still awaited.
      const read = readAll(body).then(
        () => new Error("the body ended although the store was killed"),
        (e: unknown) => e,
      );
      await swift.kill();
      const streamErr = await read;
      expectSharedStoreError(streamErr);
      expect(streamErr.message).toMatch(/while reading the body/);

      const attempts: [string, () => Promise<unknown>][] = [
        ["head", () => s3.head(large.digest)],
        ["get", () => s3.get(large.digest, { start: 0, end: 9 })],
        ["put", () => s3.put(small.digest, small.file, small.bytes.length, "application/octet-stream")],
        ["put multipart", () => s3.put(large.digest, large.file, large.bytes.length, MANIFEST)],
        ["delete", () => s3.delete(small.digest)],
        ["list", async () => { for await (const _ of s3.list()) void _; }],
      ];
      for (const [name, attempt] of attempts) {
        const { err, ms } = await failure(attempt);
        expectSharedStoreError(err);
        expect(err.message, name).toContain(swift.endpoint);
        expect(ms, name).toBeLessThan(PROMPT_MS);
      }

      await swift.restart();
      expect((await s3.head(large.digest))?.size).toBe(large.bytes.length);
    } finally {
      s3.close();
    }
  });
});
