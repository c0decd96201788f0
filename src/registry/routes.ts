import { parseDigest, type Digest } from "../oci/digest.js";
import { isRepositoryName, isTag, MAX_NAME_LENGTH } from "../oci/names.js";

export type RegistryRoute =
  | { kind: "ping" }
  | { kind: "blob"; name: string; digest: Digest }
  | { kind: "manifest"; name: string; digest: Digest }
  | { kind: "tag"; name: string; tag: string }
  /** A blob or manifest path whose name, digest or tag is outside the grammar: no cache key. */
  | { kind: "unkeyable"; part: "name" | "digest" | "tag"; name: string }
  | { kind: "other" };

/**
 * Classifies a request path (without query). Splits on the LAST "/blobs/" or
 * "/manifests/", because a repository name may itself contain "blobs" or "manifests".
 * Pure: no I/O, so it is tested exhaustively.
 */
export function parseRegistryPath(path: string): RegistryRoute {
  if (path === "/v2/" || path === "/v2") return { kind: "ping" };
  if (!path.startsWith("/v2/")) return { kind: "other" };
  const rest = path.slice(4);
  const blobAt = rest.lastIndexOf("/blobs/");
  const manifestAt = rest.lastIndexOf("/manifests/");
  if (blobAt < 0 && manifestAt < 0) return { kind: "other" };
  const isBlob = blobAt > manifestAt;
  const at = isBlob ? blobAt : manifestAt;
  const name = rest.slice(0, at);
  const reference = rest.slice(at + (isBlob ? "/blobs/".length : "/manifests/".length));
  // "/v2/<name>/blobs/uploads/..." is the push API: not ours to cache.
  if (isBlob && (reference === "uploads" || reference === "uploads/" || reference.startsWith("uploads/"))) {
    return { kind: "other" };
  }
  if (name.length > MAX_NAME_LENGTH || !isRepositoryName(name)) return { kind: "unkeyable", part: "name", name };
  if (isBlob || reference.includes(":")) {
    const digest = parseDigest(reference);
    if (!digest) return { kind: "unkeyable", part: "digest", name };
    return isBlob ? { kind: "blob", name, digest } : { kind: "manifest", name, digest };
  }
  if (!isTag(reference)) return { kind: "unkeyable", part: "tag", name };
  return { kind: "tag", name, tag: reference };
}
