import { parseDigest, type Digest } from "../oci/digest.js";
import { isRepositoryName, isTag, MAX_NAME_LENGTH } from "../oci/names.js";

export type RegistryRoute =
  | { kind: "ping" }
  | { kind: "blob"; name: string; digest: Digest }
  | { kind: "manifest"; name: string; digest: Digest }
  | { kind: "tag"; name: string; tag: string }
  | { kind: "invalid"; code: "NAME_INVALID" | "DIGEST_INVALID" | "TAG_INVALID"; message: string }
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
  if (name.length === 0 || name.length > MAX_NAME_LENGTH || !isRepositoryName(name)) {
    return { kind: "invalid", code: "NAME_INVALID", message: "invalid repository name" };
  }
  if (reference.includes(":")) {
    const digest = parseDigest(reference);
    if (!digest) return { kind: "invalid", code: "DIGEST_INVALID", message: "invalid or unsupported digest" };
    return isBlob ? { kind: "blob", name, digest } : { kind: "manifest", name, digest };
  }
  if (isBlob) return { kind: "invalid", code: "DIGEST_INVALID", message: "blobs are addressed by digest" };
  if (!isTag(reference)) return { kind: "invalid", code: "TAG_INVALID", message: "invalid tag" };
  return { kind: "tag", name, tag: reference };
}

/**
 * Paths that normalize differently on different servers (dot segments, encoded
 * dots, slashes or backslashes, NUL) are refused rather than passed on: what
 * regcache checks must be what upstream serves.
 */
export function isCleanPath(url: string): boolean {
  const path = url.split("?")[0]!;
  if (/(^|\/)\.{1,2}(\/|$)/.test(path)) return false;
  return !/%(2e|2f|5c|00)|\\|\0/i.test(path);
}
