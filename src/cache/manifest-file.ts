import { readFile } from "node:fs/promises";
import type { Logger } from "../log/logger.js";
import { parseDigest } from "../oci/digest.js";
import { describeManifest, MAX_MANIFEST_BYTES } from "../oci/media-types.js";
import type { CacheIndex } from "./cache-index.js";
import type { DataPaths } from "./data-paths.js";
import { settleLegacyType } from "./manifest-types.js";

/** What a cached file says of itself (describeManifest); a file that cannot be read is no manifest. */
export async function readManifestDescription(file: string, size: number): Promise<{ manifest: boolean; declared: string | undefined }> {
  if (size > MAX_MANIFEST_BYTES) return { manifest: false, declared: undefined };
  try {
    return describeManifest(await readFile(file, "utf8"));
  } catch {
    return { manifest: false, declared: undefined };
  }
}

/**
 * At start, after recovery: rows migrated from before per-repository types (manifest-types.ts)
 * get their types from the manifests themselves. Says how many were settled.
 */
export async function settleManifestTypes(paths: DataPaths, index: CacheIndex, logger: Logger): Promise<number> {
  let settled = 0;
  for (const entry of [...index.allBlobs()]) {
    const digest = entry.legacyMediaType === undefined ? undefined : parseDigest(entry.digest);
    if (!digest) continue;
    settleLegacyType(entry, (await readManifestDescription(paths.blobFile(digest), entry.size)).declared);
    await index.putBlob(entry);
    settled += 1;
  }
  if (settled > 0) logger.info({ settled }, "cached manifests' media types read from the manifests themselves (index schema 3)");
  return settled;
}
