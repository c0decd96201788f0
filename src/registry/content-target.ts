import type { Digest } from "../oci/digest.js";

/** A blob or a manifest by digest, in a repository. */
export interface ContentTarget {
  kind: "blob" | "manifest";
  name: string;
  digest: Digest;
}

export function contentPath(target: ContentTarget): string {
  return `/v2/${target.name}/${target.kind === "blob" ? "blobs" : "manifests"}/${target.digest.value}`;
}
