import type { FileHandle } from "node:fs/promises";
import { AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateMultipartUploadCommand, UploadPartCommand, type S3Client } from "@aws-sdk/client-s3";

/** Where an object goes, as every command of its upload names it. */
export interface UploadTarget {
  Bucket: string;
  Key: string;
  ContentType: string;
}

export interface UploadPlan {
  /** Bytes per part (S3: at least 5 MiB but the last). */
  partSize: number;
  /** Parts sent at once; each holds one buffer of partSize for the whole upload. */
  partsInFlight: number;
}

/** S3's limit on the parts of one upload. */
const MAX_PARTS = 10_000;

/**
 * A file of `size` bytes uploaded as an S3 multipart upload. Each part is read from the file in
 * one read, into a buffer that the next part reuses, and sent whole: the SDK signs the part's
 * SHA-256 (SigV4's payload hash), so the store refuses a part whose bytes changed on the way.
 * Reading a stream instead would hand over 64 KiB chunks to be concatenated into a fresh buffer
 * per part: the garbage that leaves costs more CPU than the rest of the upload (bench/fill-cpu.ts:
 * a fleet fill's CPU per GB). A buffer is reused only once its part is answered: the SDK
 * resends it, unchanged, when it retries the part. A part that fails fails the upload, which is
 * aborted once the parts in flight are answered, so that the store drops the parts it holds.
 */
export async function uploadInParts(client: S3Client, target: UploadTarget, file: FileHandle, size: number, plan: UploadPlan): Promise<void> {
  const { Bucket, Key } = target;
  const { UploadId } = await client.send(new CreateMultipartUploadCommand(target));
  if (!UploadId) throw new Error("the store answered no UploadId");
  // A file too large for MAX_PARTS parts of the plan's size (160 GiB) goes in larger parts, not in a doomed upload.
  const partSize = Math.max(plan.partSize, Math.ceil(size / MAX_PARTS));
  const count = Math.ceil(size / partSize);
  const etags: string[] = [];
  let next = 0;
  let failed = false;
  const sendParts = async (): Promise<void> => {
    // As large as the largest part this worker takes: only the last part is shorter, and no part follows it.
    let buffer: Buffer | undefined;
    while (next < count && !failed) {
      const index = next++;
      const start = index * partSize;
      const length = Math.min(partSize, size - start);
      buffer ??= Buffer.allocUnsafeSlow(length);
      try {
        await readFully(file, buffer, length, start);
        // Another part failed while this one was read: the upload is lost, its bytes need not go.
        if (failed) return;
        const { ETag } = await client.send(new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: index + 1, Body: buffer.subarray(0, length), ContentLength: length }));
        if (!ETag) throw new Error(`the store answered part ${index + 1} without an ETag`);
        etags[index] = ETag;
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  const results = await Promise.allSettled(Array.from({ length: Math.min(plan.partsInFlight, count) }, sendParts));
  const failure = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  try {
    if (failure) throw failure.reason;
    await client.send(new CompleteMultipartUploadCommand({ Bucket, Key, UploadId, MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) } }));
  } catch (err) {
    await client.send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId })).catch(() => undefined);
    throw err;
  }
}

/** Bytes [position, position + length) of the file into the start of `buffer`; a file shorter than that is an error. */
async function readFully(file: FileHandle, buffer: Buffer, length: number, position: number): Promise<void> {
  for (let done = 0; done < length; ) {
    const { bytesRead } = await file.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) throw new Error(`the file ended at byte ${position + done}, before the ${length} bytes of a part`);
    done += bytesRead;
  }
}
