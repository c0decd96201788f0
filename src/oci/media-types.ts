/** What blobs are served as. */
export const OCTET_STREAM = "application/octet-stream";

/** The distribution spec lets registries refuse manifests over 4 MiB: nothing larger is a manifest worth holding. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/** Indexes (multi-platform): their entries are manifests, not layers. */
export const INDEX_MEDIA_TYPES: readonly string[] = ["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];

/** Single-platform image manifests. */
export const IMAGE_MANIFEST_MEDIA_TYPES: readonly string[] = ["application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"];

/**
 * Every type a registry serves a manifest as: the above, Docker's schema 1 (plain and signed) and
 * the OCI artifact manifest of image-spec 1.1's drafts. A Content-Type outside this list (text/plain,
 * application/json, application/octet-stream) says nothing about a manifest and is never kept as its type.
 */
const MANIFEST_MEDIA_TYPES = new Set([
  ...INDEX_MEDIA_TYPES,
  ...IMAGE_MANIFEST_MEDIA_TYPES,
  "application/vnd.docker.distribution.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.v1+prettyjws",
  "application/vnd.oci.artifact.manifest.v1+json",
]);

/** Whether a Content-Type (parameters aside, any case) names a manifest type. Pure. */
export function isManifestMediaType(contentType: string | undefined): boolean {
  return contentType !== undefined && MANIFEST_MEDIA_TYPES.has(contentType.split(";")[0]!.trim().toLowerCase());
}

/**
 * What a document says of itself: the manifest type it declares in its top-level mediaType field,
 * if any (OCI image-spec makes the field optional), and whether it is a manifest at all (it
 * declares a manifest type, or has a schemaVersion and an image manifest's, an index's or a
 * schema 1 manifest's fields). Pure.
 */
export function describeManifest(text: string): { manifest: boolean; declared: string | undefined } {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return { manifest: false, declared: undefined };
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) return { manifest: false, declared: undefined };
  const { schemaVersion, mediaType, config, manifests, fsLayers } = doc as Record<string, unknown>;
  const declared = typeof mediaType === "string" && isManifestMediaType(mediaType) ? mediaType : undefined;
  const manifest = declared !== undefined || (typeof schemaVersion === "number" && (config !== undefined || manifests !== undefined || fsLayers !== undefined));
  return { manifest, declared };
}
