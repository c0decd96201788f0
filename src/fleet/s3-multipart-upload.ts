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

/**
 * A file of `size` bytes uploaded as an S3 multipart upload. Each part is read from the file in
 * one read, into a buffer that the next part reuses, and sent whole: the SDK signs the part's
 * SHA-256 (SigV4's payload hash), so the store refuses a part whose bytes changed on the way.
 * lib-storage's Upload, which did this from a stream, read the file in 64 KiB chunks and
 * concatenated each part into a fresh buffer; the garbage that left cost more CPU than the rest
 * of the upload (bench/fill-cpu.ts: a fleet fill's CPU per GB). A part that fails fails the
 * upload, which is then aborted, so that the store drops the parts it holds.
 */
export async function uploadInParts(client: S3Client, target: UploadTarget, file: FileHandle, size: number, plan: UploadPlan): Promise<void> {
  const { Bucket, Key } = target;
  const { UploadId } = await client.send(new CreateMultipartUploadCommand(target));
  if (!UploadId) throw new Error("the store answered no UploadId");
  const count = Math.ceil(size / plan.partSize);
  const etags: string[] = [];
  let next = 0;
  let failed = false;
  const sendParts = async (): Promise<void> => {
    const buffer = Buffer.allocUnsafeSlow(Math.min(plan.partSize, size));
    while (next < count && !failed) {
      const index = next++;
      const start = index * plan.partSize;
      const length = Math.min(plan.partSize, size - start);
      try {
        await readFully(file, buffer, length, start);
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
