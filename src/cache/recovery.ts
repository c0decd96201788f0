import { mkdir, readdir, rm, stat } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "../log/logger.js";
import { parseDigest } from "../oci/digest.js";
import { OCTET_STREAM } from "../oci/media-types.js";
import type { CacheIndex } from "./cache-index.js";
import type { DataPaths } from "./data-paths.js";
import { hashFile } from "./file-hash.js";
import { readManifestDescription, settleManifestTypes } from "./manifest-file.js";

export interface RecoveryReport {
  tempFilesRemoved: number;
  rowsDropped: number;
  filesReindexed: number;
  filesRemoved: number;
}

/**
 * Brings index and files back into agreement after any stop, clean or kill -9:
 * temp files are partial downloads, rows without a right-sized file are lies,
 * and files without a row are re-admitted only if their content hashes to their name.
 * On a disk that cannot be written (`writable` false) nothing is removed: what is there is
 * only read, and the next start on a writable disk tidies up.
 */
export async function recoverDataDir(paths: DataPaths, index: CacheIndex, logger: Logger, writable = true): Promise<RecoveryReport> {
  const report: RecoveryReport = { tempFilesRemoved: 0, rowsDropped: 0, filesReindexed: 0, filesRemoved: 0 };
  if (writable) {
    await mkdir(paths.tmpDir, { recursive: true });
    await mkdir(paths.blobsDir, { recursive: true });
    for (const name of await readdir(paths.tmpDir)) {
      await rm(path.join(paths.tmpDir, name), { recursive: true, force: true });
      report.tempFilesRemoved += 1;
    }
  }
  for (const entry of [...index.allBlobs()]) {
    const digest = parseDigest(entry.digest);
    const size = digest ? await fileSize(paths.blobFile(digest)) : undefined;
    if (size !== entry.size) {
      await index.deleteBlob(entry.digest);
      report.rowsDropped += 1;
    }
  }
  for (const file of await listBlobFiles(paths.blobsDir)) {
    const digest = parseDigest(`${file.algorithm}:${file.hex}`);
    if (digest && index.getBlob(digest.value)) continue;
    const actual = digest ? await hashFile(file.path, digest.algorithm) : undefined;
    if (digest && actual === digest.hex && file.prefix === digest.hex.slice(0, 2)) {
      const now = Date.now();
      // A re-admitted file has lost its Content-Type: a manifest says what it is (and maybe its type), anything else is a blob.
      const { manifest, declared } = await readManifestDescription(file.path, file.size);
      const kind = manifest ? "manifest" : "blob";
      await index.putBlob({ digest: digest.value, size: file.size, kind, mediaType: manifest ? (declared ?? "") : OCTET_STREAM, created: now, lastAccess: now, hits: 0, links: [], verifiedAt: now });
      report.filesReindexed += 1;
    } else if (writable) {
      await rm(file.path, { force: true });
      report.filesRemoved += 1;
    }
  }
  await settleManifestTypes(paths, index, logger);
  logger.info({ ...report, entries: index.count, bytes: index.size }, "cache recovered");
  return report;
}

async function fileSize(file: string): Promise<number | undefined> {
  try {
    return (await stat(file)).size;
  } catch {
    return undefined;
  }
}

interface BlobFile {
  path: string;
  algorithm: string;
  prefix: string;
  hex: string;
  size: number;
}

async function listBlobFiles(blobsDir: string): Promise<BlobFile[]> {
  const files: BlobFile[] = [];
  const algorithms = await readdir(blobsDir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return [];
    throw err;
  });
  for (const algorithm of algorithms) {
    const algDir = path.join(blobsDir, algorithm);
    if (!(await stat(algDir)).isDirectory()) {
      files.push({ path: algDir, algorithm: "", prefix: "", hex: "", size: 0 });
      continue;
    }
    for (const prefix of await readdir(algDir)) {
      const prefixDir = path.join(algDir, prefix);
      if (!(await stat(prefixDir)).isDirectory()) {
        files.push({ path: prefixDir, algorithm, prefix: "", hex: "", size: 0 });
        continue;
      }
      for (const hex of await readdir(prefixDir)) {
        const file = path.join(prefixDir, hex);
        const info = await stat(file);
        files.push({ path: file, algorithm, prefix, hex, size: info.isFile() ? info.size : -1 });
      }
    }
  }
  return files;
}
