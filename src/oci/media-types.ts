/** What blobs are served as, and what a manifest of unknown type falls back to. */
export const OCTET_STREAM = "application/octet-stream";

/** Indexes (multi-platform): their entries are manifests, not layers. */
export const INDEX_MEDIA_TYPES: readonly string[] = ["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];

/** Single-platform image manifests. */
export const IMAGE_MANIFEST_MEDIA_TYPES: readonly string[] = ["application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"];
