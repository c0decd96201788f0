import { open } from "node:fs/promises";
import { PassThrough, Readable } from "node:stream";
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import { RegcacheError, systemReason } from "../errors.js";
import type { Logger } from "../log/logger.js";
import { parseDigest, type Digest } from "../oci/digest.js";
import type { ObjectStore, StoredObject } from "./object-store.js";
import { uploadInParts, type UploadPlan } from "./s3-multipart-upload.js";
import { S3Transport } from "./s3-transport.js";

export interface S3ObjectStoreOptions {
  bucket: string;
  /** Key prefix without leading or trailing slash; empty: the bucket's root. */
  prefix: string;
  /** An S3-compatible service (MinIO, Ceph, Swift's s3api); absent: AWS S3. */
  endpoint?: string;
  forcePathStyle: boolean;
  /** Absent: the SDK's chain (AWS_REGION, the config file). */
  region?: string;
  timeouts: {
    connectMs: number;
    /**
     * The longest a request may go without a byte moving either way, before and after the answer
     * began. A caller that stops reading a body for longer loses it too (an error, like a stall).
     */
    requestMs: number;
    /**
     * How long a HEAD or GET may wait for the store's answer (its headers), retries included: a
     * client waits on it, and a stalled store must send it to upstream soon, not after requestMs twice.
     */
    answerMs: number;
  };
}

/** Objects that one PUT cannot take go in parts, each in a buffer of its own: 64 MiB held per upload at most. */
const UPLOAD_PLAN: UploadPlan = { partSize: 16 * 1024 * 1024, partsInFlight: 4 };
/** The most S3 takes in one PUT (5 GiB). */
const LARGEST_PUT = 5 * 1024 ** 3;
/** A whole-object PUT reads the file in chunks this large: fewer, larger socket writes. */
const READ_CHUNK = 1024 * 1024;
/** One retry for a blip; more would multiply how long callers wait on a store that is down. */
const MAX_ATTEMPTS = 2;

/**
 * The fleet's shared blob tier on S3 or an S3-compatible store. Credentials come from the SDK's
 * default chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, a role), never from
 * regcache's options, so they never reach a log line or an error message.
 *
 * get() answers `size` as the object's whole size, also for a range (from Content-Range), so a
 * caller can check it against the size it expects for the digest.
 */
export class S3ObjectStore implements ObjectStore {
  private readonly client: S3Client;
  /** Where every key of a blob begins: "<prefix>/blobs/" or "blobs/". */
  private readonly blobsKey: string;
  /** The store as an operator configured it, for error messages. */
  private readonly where: string;

  constructor(
    private readonly options: S3ObjectStoreOptions,
    private readonly logger: Logger,
  ) {
    this.blobsKey = options.prefix === "" ? "blobs/" : `${options.prefix}/blobs/`;
    this.where = `s3://${options.bucket}${options.prefix === "" ? "" : `/${options.prefix}`} at ${options.endpoint ?? "AWS S3"}`;
    this.client = new S3Client({
      endpoint: options.endpoint,
      region: options.region,
      forcePathStyle: options.forcePathStyle,
      maxAttempts: MAX_ATTEMPTS,
      // The defaults (CRC32 trailers, aws-chunked uploads) are refused by Swift's s3api and others.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      // An idle bound, not a whole request's: that would fail a slow but moving transfer; this one
      // also errors a body stalled mid-stream.
      requestHandler: new S3Transport({ connectMs: options.timeouts.connectMs, idleMs: options.timeouts.requestMs }),
      logger: sdkLogger(logger),
    });
  }

  async head(digest: Digest): Promise<{ size: number; mediaType: string | undefined } | undefined> {
    try {
      const answer = await this.answered((options) => this.client.send(new HeadObjectCommand({ Bucket: this.options.bucket, Key: this.key(digest) }), options));
      return { size: this.contentLength(answer.ContentLength, `HEAD of ${digest.value}`), mediaType: answer.ContentType };
    } catch (err) {
      // A HEAD answer has no body to tell NoSuchKey from NoSuchBucket: a 404 is taken as absent.
      if (err instanceof S3ServiceException && err.$metadata.httpStatusCode === 404) return undefined;
      throw this.failure(`HEAD of ${digest.value}`, err);
    }
  }

  async get(digest: Digest, range?: { start: number; end: number }, signal?: AbortSignal): Promise<{ body: Readable; size: number } | undefined> {
    const action = range ? `GET of ${digest.value} bytes ${range.start}-${range.end}` : `GET of ${digest.value}`;
    let answer;
    try {
      answer = await this.answered(
        (options) => this.client.send(new GetObjectCommand({ Bucket: this.options.bucket, Key: this.key(digest), Range: range && `bytes=${range.start}-${range.end}` }), options),
        signal,
      );
    } catch (err) {
      // The caller's own choice, not the store's failure: it must not count against the store's health.
      if (signal?.aborted) throw signal.reason;
      if (err instanceof S3ServiceException && err.name === "NoSuchKey") return undefined;
      throw this.failure(action, err);
    }
    const body = answer.Body;
    if (!(body instanceof Readable)) throw this.failure(action, new Error("the answer has no body stream"));
    try {
      const size = range ? this.totalOfRange(answer.ContentRange, action) : this.contentLength(answer.ContentLength, action);
      return { body: this.guard(body, action), size };
    } catch (err) {
      body.destroy();
      throw err;
    }
  }

  /** A request whose answer must begin within answerMs; the body, once it flows, is bounded by requestMs alone. */
  private async answered<T>(send: (options: { abortSignal: AbortSignal }) => Promise<T>, callerSignal?: AbortSignal): Promise<T> {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(new Error(`no answer within ${this.options.timeouts.answerMs} ms`)), this.options.timeouts.answerMs);
    try {
      return await send({ abortSignal: callerSignal ? AbortSignal.any([abort.signal, callerSignal]) : abort.signal });
    } catch (err) {
      // The SDK says only "Request aborted": the reason is the deadline.
      throw abort.signal.aborted ? abort.signal.reason : err;
    } finally {
      clearTimeout(timer);
    }
  }

  async put(digest: Digest, file: string, size: number, mediaType: string): Promise<void> {
    // Opened before the request: a file that cannot be read is the local disk's failure, told at
    // once, not a request left waiting for a body until the idle timeout.
    let handle;
    try {
      handle = await open(file);
    } catch (err) {
      throw new RegcacheError("CACHE_IO", `cannot read ${file} to upload ${digest.value} to the shared blob store: ${systemReason(err)}`, { cause: err });
    }
    const target = { Bucket: this.options.bucket, Key: this.key(digest), ContentType: mediaType };
    try {
      if (size < UPLOAD_PLAN.partSize || (digest.algorithm === "sha256" && size <= LARGEST_PUT)) {
        // The SDK pipes the body without listening for its errors: a disk read error must fail the upload, not the process.
        // Up to `size` bytes: a file grown since it was verified must not send more than its Content-Length.
        const body = handle.createReadStream({ autoClose: false, highWaterMark: READ_CHUNK, ...(size > 0 ? { end: size - 1 } : {}) }).on("error", () => undefined);
        const command = new PutObjectCommand({ ...target, Body: body, ContentLength: size });
        if (digest.algorithm === "sha256") {
          const hex = digest.hex;
          command.middlewareStack.add((next) => (args) => next({ ...args, request: withPayloadHash(args.request, hex) }), { step: "build", name: "regcachePayloadHash" });
        }
        await this.client.send(command).finally(() => body.destroy());
      } else {
        await uploadInParts(this.client, target, handle, size, UPLOAD_PLAN);
      }
    } catch (err) {
      throw this.failure(`upload of ${digest.value} (${size} bytes)`, err);
    } finally {
      await handle.close().catch(() => undefined);
    }
  }

  async delete(digest: Digest): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.options.bucket, Key: this.key(digest) }));
    } catch (err) {
      // S3 answers 204 for a key that is not there; some compatible stores answer 404: gone either way.
      if (err instanceof S3ServiceException && err.name === "NoSuchKey") return;
      throw this.failure(`DELETE of ${digest.value}`, err);
    }
  }

  async *list(): AsyncIterable<StoredObject> {
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(new ListObjectsV2Command({ Bucket: this.options.bucket, Prefix: this.blobsKey, ContinuationToken: token }));
      } catch (err) {
        throw this.failure("listing", err);
      }
      for (const object of page.Contents ?? []) {
        const digest = object.Key === undefined ? undefined : this.digestOf(object.Key);
        if (digest === undefined) {
          this.logger.debug({ key: object.Key }, "shared blob store: a key under the prefix is not a blob; ignored");
          continue;
        }
        yield { digest: digest.value, size: object.Size ?? 0, lastModified: object.LastModified?.getTime() ?? 0 };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  close(): void {
    this.client.destroy();
  }

  private key(digest: Digest): string {
    return `${this.blobsKey}${digest.algorithm}/${digest.hex.slice(0, 2)}/${digest.hex}`;
  }

  /** The digest a key names, when it is exactly a blob's key (the layout of key()). */
  private digestOf(key: string): Digest | undefined {
    if (!key.startsWith(this.blobsKey)) return undefined;
    const [algorithm, fanout, hex, ...rest] = key.slice(this.blobsKey.length).split("/");
    if (rest.length > 0 || hex === undefined || fanout !== hex.slice(0, 2)) return undefined;
    return parseDigest(`${algorithm}:${hex}`);
  }

  private contentLength(length: number | undefined, action: string): number {
    if (length === undefined) throw this.failure(action, new Error("the answer has no Content-Length"));
    return length;
  }

  /** The whole object's size from "bytes START-END/SIZE"; a store that ignored the Range has none. */
  private totalOfRange(contentRange: string | undefined, action: string): number {
    const match = contentRange === undefined ? null : /^bytes \d+-\d+\/(\d+)$/.exec(contentRange);
    if (!match) throw this.failure(action, new Error(`the answer to a ranged GET has Content-Range ${JSON.stringify(contentRange ?? null)}`));
    return Number(match[1]);
  }

  /**
   * The body as callers see it: an error mid-stream (the store went away, the idle timeout
   * fired) is a SHARED_STORE error like any other; a caller that stops reading frees the socket.
   */
  private guard(body: Readable, action: string): Readable {
    const out = new PassThrough();
    body.on("error", (err) => out.destroy(this.failure(`${action}, while reading the body`, err)));
    out.once("close", () => {
      if (!body.readableEnded) body.destroy();
    });
    body.pipe(out);
    return out;
  }

  private failure(action: string, err: unknown): RegcacheError {
    return new RegcacheError("SHARED_STORE", `shared blob store ${this.where}: ${action} failed: ${reason(err)}`, { cause: err });
  }
}

/**
 * SigV4 signs a hash of the body (x-amz-content-sha256), which the store checks before it keeps
 * the object. Of a blob whose digest is a SHA-256, that hash is the digest: given here, the SDK
 * hashes nothing (for a stream it would send UNSIGNED-PAYLOAD, and a part buffer it hashes once
 * more, a third of an upload's CPU), and the store refuses a file whose bytes are no longer the
 * blob's (a disk that changed them since they were verified) instead of keeping them under its key.
 */
function withPayloadHash(request: unknown, hex: string): unknown {
  (request as { headers: Record<string, string> }).headers["x-amz-content-sha256"] = hex;
  return request;
}

/**
 * Without a logger the SDK warns on the console (sockets exhausted, a failed upload it did not
 * retry). Its error lines repeat each failed command, error document and all, which callers
 * hear as a rejection; its info lines are each command's input and output: neither is kept.
 */
function sdkLogger(logger: Logger): { debug(): void; info(): void; warn(...content: unknown[]): void; error(): void } {
  const child = logger.child({ component: "s3" });
  return {
    debug: () => undefined,
    info: () => undefined,
    warn: (...content) => child.warn(content.map(String).join(" ")),
    error: () => undefined,
  };
}

/** Names the SDK gives an error that has no error document (a HEAD answer has no body). */
const NAMELESS = new Set(["Unknown", "UnknownError", "NotFound"]);

/** Why a request failed, in the store's words when it answered, in the network's when it did not. */
function reason(err: unknown): string {
  if (err instanceof S3ServiceException) {
    const status = err.$metadata.httpStatusCode;
    const name = NAMELESS.has(err.name) || err.name === String(status) ? "" : ` ${err.name}`;
    const message = err.message && err.message !== err.name && !NAMELESS.has(err.message) ? `: ${err.message}` : "";
    const hint = status === 403 ? " (check the credentials the SDK found, AWS_ACCESS_KEY_ID and the rest, and the bucket's permissions)" : "";
    return `the store answered ${status ?? "an error"}${name}${message}${hint}`;
  }
  if (err instanceof Error && err.name === "TimeoutError") return err.message.replace(/^@smithy\/node-http-handler - /, "");
  return systemReason(err);
}
