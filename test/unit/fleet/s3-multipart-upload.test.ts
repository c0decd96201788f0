import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  S3Client,
  UploadPartCommand,
  type UploadPartCommandInput,
} from "@aws-sdk/client-s3";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { uploadInParts, type UploadPlan } from "../../../src/fleet/s3-multipart-upload.js";

const PLAN: UploadPlan = { partSize: 1000, partsInFlight: 3 };
const TARGET = { Bucket: "b", Key: "k", ContentType: "application/octet-stream" };

/** Lets pending answers move. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

interface Sent {
  part: number;
  /** The bytes as they were when the part was sent. */
  bytes: Buffer;
  /** The memory the body lies in. */
  memory: ArrayBufferLike;
}

/**
 * A store behind S3Client.send: what each command does is the test's choice; by default every
 * command succeeds a turn of the event loop later. `events` records the order of what happened.
 */
class FakeStore {
  readonly events: string[] = [];
  readonly parts: Sent[] = [];
  completed: { ETag?: string; PartNumber?: number }[] | undefined;
  create: () => Promise<{ UploadId?: string }> = async () => ({ UploadId: "upload-1" });
  uploadPart: (part: number) => Promise<{ ETag?: string }> = async (part) => {
    await settle();
    return { ETag: `"etag-${part}"` };
  };
  complete: () => Promise<object> = async () => ({});
  abort: () => Promise<object> = async () => ({});

  readonly client = {
    send: async (command: unknown): Promise<unknown> => {
      if (command instanceof CreateMultipartUploadCommand) {
        this.events.push("create");
        return this.create();
      }
      if (command instanceof UploadPartCommand) {
        const input: UploadPartCommandInput = command.input;
        const part = input.PartNumber!;
        const body = input.Body as Buffer;
        expect(body.length).toBe(input.ContentLength);
        const bytes = Buffer.from(body);
        this.parts.push({ part, bytes, memory: body.buffer });
        this.events.push(`part ${part} sent`);
        // The SDK reads the body until the store answers (and again for a retry): it must not change meanwhile.
        const unchanged = () => {
          if (!body.equals(bytes)) this.events.push(`part ${part} changed before its answer`);
        };
        try {
          const answer = await this.uploadPart(part);
          unchanged();
          this.events.push(`part ${part} stored`);
          return answer;
        } catch (err) {
          unchanged();
          this.events.push(`part ${part} failed`);
          throw err;
        }
      }
      if (command instanceof CompleteMultipartUploadCommand) {
        this.events.push("complete");
        this.completed = command.input.MultipartUpload?.Parts;
        return this.complete();
      }
      if (command instanceof AbortMultipartUploadCommand) {
        this.events.push("abort");
        return this.abort();
      }
      throw new Error(`unexpected command ${String(command)}`);
    },
  } as unknown as S3Client;
}

let dir: string;
const handles: FileHandle[] = [];

async function fileOf(bytes: Buffer): Promise<FileHandle> {
  const file = path.join(dir, `f${handles.length}`);
  writeFileSync(file, bytes);
  const handle = await open(file);
  handles.push(handle);
  return handle;
}

async function rejection(work: Promise<unknown>): Promise<Error> {
  return work.then(
    () => {
      throw new Error("the upload succeeded");
    },
    (err: unknown) => err as Error,
  );
}

/** Every part answered (stored or failed) before the abort was sent: none can land after it. */
function expectAbortAfterEveryPart(events: string[]): void {
  const abortAt = events.indexOf("abort");
  expect(abortAt, events.join(", ")).toBeGreaterThan(-1);
  const sent = events.filter((e) => e.endsWith(" sent")).length;
  const answered = events.slice(0, abortAt).filter((e) => e.endsWith(" stored") || e.endsWith(" failed")).length;
  expect(answered, events.join(", ")).toBe(sent);
  expect(events.slice(abortAt + 1), events.join(", ")).toEqual([]);
}

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), "regcache-multipart-"));
});

afterEach(async () => {
  await Promise.all(handles.splice(0).map((h) => h.close().catch(() => undefined)));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("uploadInParts", () => {
  it("sends each part's bytes, unchanged until the part is answered, and completes with every part in order", async () => {
    for (const size of [999, 1000, 1001, 2000, 3000, 5500, 7001]) {
      const bytes = randomBytes(size);
      const store = new FakeStore();
      // Later parts answer first, so that workers take parts out of order.
      store.uploadPart = async (part) => {
        for (let i = 0; i < 10 - part; i++) await settle();
        return { ETag: `"etag-${part}"` };
      };
      await uploadInParts(store.client, TARGET, await fileOf(bytes), size, PLAN);

      const count = Math.ceil(size / PLAN.partSize);
      expect(store.parts.map((p) => p.part).sort((a, b) => a - b), `size ${size}`).toEqual(Array.from({ length: count }, (_, i) => i + 1));
      for (const { part, bytes: sent } of store.parts) {
        expect(sent.equals(bytes.subarray((part - 1) * PLAN.partSize, part * PLAN.partSize)), `size ${size} part ${part}`).toBe(true);
      }
      expect(store.events.filter((e) => e.includes("changed")), `size ${size}`).toEqual([]);
      expect(store.completed, `size ${size}`).toEqual(Array.from({ length: count }, (_, i) => ({ ETag: `"etag-${i + 1}"`, PartNumber: i + 1 })));
      expect(store.events).not.toContain("abort");
    }
  });

  it("holds a buffer per part in flight, as large as the parts it reads: a short last part gets a short one", async () => {
    for (const [size, held] of [
      [1001, 1001],
      [2001, 2001],
      [3001, 3000],
      [5500, 3000],
    ]) {
      const store = new FakeStore();
      await uploadInParts(store.client, TARGET, await fileOf(randomBytes(size!)), size!, PLAN);
      const buffers = new Set(store.parts.map((p) => p.memory));
      expect([...buffers].reduce((sum, b) => sum + b.byteLength, 0), `size ${size}`).toBe(held);
    }
  });

  it("a file of more than 10 000 parts of the plan's size goes in larger parts: S3 refuses part 10 001", async () => {
    const size = 10_000 * PLAN.partSize + 1;
    const bytes = randomBytes(size);
    const store = new FakeStore();
    store.uploadPart = async (part) => ({ ETag: `"etag-${part}"` });
    await uploadInParts(store.client, TARGET, await fileOf(bytes), size, PLAN);
    expect(store.completed).toHaveLength(Math.ceil(size / 1001));
    const sent = [...store.parts].sort((a, b) => a.part - b.part);
    expect(Buffer.concat(sent.map((p) => p.bytes)).equals(bytes)).toBe(true);
    expect(sent.slice(0, -1).every((p) => p.bytes.length === 1001)).toBe(true);
  });

  it("a part that fails while others are in flight fails the upload; the others finish first, none starts after, and the abort comes last", async () => {
    const bytes = randomBytes(5500);
    const store = new FakeStore();
    const broken = new Error("part 2 refused");
    let sent = 0;
    store.uploadPart = async (part) => {
      sent += 1;
      // Until parts 1 to 3 are all sent; then part 2 fails while 1 and 3 are still in flight, and 3 fails later too.
      while (sent < 3) await settle();
      if (part === 2) throw broken;
      for (let i = 0; i < 5; i++) await settle();
      if (part === 3) throw new Error("part 3 refused");
      return { ETag: `"etag-${part}"` };
    };
    expect(await rejection(uploadInParts(store.client, TARGET, await fileOf(bytes), bytes.length, PLAN))).toBe(broken);
    expect(store.parts.map((p) => p.part).sort()).toEqual([1, 2, 3]);
    expectAbortAfterEveryPart(store.events);
    expect(store.events).not.toContain("complete");
  });

  it("a failed CreateMultipartUpload fails the upload with nothing to abort; an answer without an UploadId is a failure", async () => {
    const store = new FakeStore();
    const refused = new Error("create refused");
    store.create = () => Promise.reject(refused);
    const file = await fileOf(randomBytes(3000));
    expect(await rejection(uploadInParts(store.client, TARGET, file, 3000, PLAN))).toBe(refused);
    expect(store.events).toEqual(["create"]);

    store.create = async () => ({});
    expect((await rejection(uploadInParts(store.client, TARGET, file, 3000, PLAN))).message).toMatch(/no UploadId/);
    expect(store.parts).toEqual([]);
  });

  it("a failed CompleteMultipartUpload, or a part answered without an ETag, aborts the upload; an abort that fails too leaves the first error", async () => {
    const bytes = randomBytes(2500);
    const store = new FakeStore();
    const refused = new Error("complete refused");
    store.complete = () => Promise.reject(refused);
    store.abort = () => Promise.reject(new Error("abort refused"));
    expect(await rejection(uploadInParts(store.client, TARGET, await fileOf(bytes), bytes.length, PLAN))).toBe(refused);
    expect(store.events.slice(-2)).toEqual(["complete", "abort"]);

    const noEtag = new FakeStore();
    noEtag.uploadPart = async (part) => (part === 2 ? {} : { ETag: `"etag-${part}"` });
    expect((await rejection(uploadInParts(noEtag.client, TARGET, await fileOf(bytes), bytes.length, PLAN))).message).toMatch(/part 2 without an ETag/);
    expectAbortAfterEveryPart(noEtag.events);
  });

  it("a file shorter than its size (truncated on the way) fails the upload at the missing part, after the parts in flight", async () => {
    const bytes = randomBytes(4200);
    const store = new FakeStore();
    // 4200 bytes on disk, 5000 announced: part 5 (bytes 4000-4999), the last, finds the end of the file.
    const err = await rejection(uploadInParts(store.client, TARGET, await fileOf(bytes), 5000, PLAN));
    expect(err.message).toMatch(/the file ended at byte 4200/);
    expect(store.parts.map((p) => p.part)).not.toContain(5);
    expectAbortAfterEveryPart(store.events);
  });

  it("a file handle closed under the upload fails it, and the upload is aborted", async () => {
    const bytes = randomBytes(5500);
    const store = new FakeStore();
    const file = await fileOf(bytes);
    // Closed once the upload has begun, before any part is read: a handle closed while reads are
    // pending closes after them, so closing it under a part let the upload finish now and then.
    store.create = async () => {
      await file.close();
      return { UploadId: "upload-1" };
    };
    const err = await rejection(uploadInParts(store.client, TARGET, file, bytes.length, PLAN));
    expect((err as NodeJS.ErrnoException).code).toMatch(/EBADF|ERR_INVALID_STATE/);
    expectAbortAfterEveryPart(store.events);
  });

  it("through the SDK, a part retried after a 500 is sent again with the same bytes, each attempt signed with the part's SHA-256", async () => {
    const bytes = randomBytes(3500);
    const seen: { part: number; hash: string | undefined; sha256: string }[] = [];
    let failedOnce = false;
    const answer = (statusCode: number, body = "", headers: Record<string, string> = {}) => ({
      response: { statusCode, headers: { "content-type": "application/xml", ...headers }, body: Readable.from([Buffer.from(body)]) },
    });
    const client = new S3Client({
      region: "us-east-1",
      endpoint: "http://store.invalid",
      forcePathStyle: true,
      credentials: { accessKeyId: "id", secretAccessKey: "secret" },
      maxAttempts: 2,
      requestChecksumCalculation: "WHEN_REQUIRED",
      requestHandler: {
        handle: async (request: { method: string; query: Record<string, string>; headers: Record<string, string>; body: unknown }) => {
          if (request.method === "POST" && "uploads" in request.query) {
            return answer(200, "<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>u-1</UploadId></InitiateMultipartUploadResult>");
          }
          if (request.method === "PUT") {
            const part = Number(request.query.partNumber);
            const body = request.body as Uint8Array;
            seen.push({ part, hash: request.headers["x-amz-content-sha256"], sha256: createHash("sha256").update(body).digest("hex") });
            await settle();
            if (part === 2 && !failedOnce) {
              failedOnce = true;
              return answer(500, "<Error><Code>InternalError</Code><Message>try again</Message></Error>");
            }
            return answer(200, "", { etag: `"etag-${part}"` });
          }
          if (request.method === "POST") return answer(200, "<CompleteMultipartUploadResult><ETag>\"whole\"</ETag></CompleteMultipartUploadResult>");
          throw new Error(`unexpected ${request.method}`);
        },
      },
    });
    try {
      await uploadInParts(client, TARGET, await fileOf(bytes), bytes.length, PLAN);
    } finally {
      client.destroy();
    }
    const expected = (part: number) => createHash("sha256").update(bytes.subarray((part - 1) * PLAN.partSize, part * PLAN.partSize)).digest("hex");
    expect(seen.filter((s) => s.part === 2)).toHaveLength(2);
    expect(seen.map((s) => s.part).sort()).toEqual([1, 2, 2, 3, 4]);
    for (const { part, hash, sha256 } of seen) {
      expect(sha256, `part ${part}'s bytes`).toBe(expected(part));
      expect(hash, `part ${part}'s signed payload hash`).toBe(expected(part));
    }
  });
});
