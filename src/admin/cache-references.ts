import { parseDigest } from "../oci/digest.js";
import { ImageReferenceError, parseImageReference } from "../oci/image-reference.js";

/** What a manifest names: other manifests (an index's entries), and blobs (an image manifest's config and layers). */
export interface ManifestReferences {
  manifests: string[];
  blobs: string[];
}

/** A tag as the tag answers in the index record it: the registry host (no port), repository and tag. */
export interface TaggedImage {
  host: string;
  name: string;
  tag: string;
}

/**
 * The digests an OCI or Docker manifest (config.digest, layers[].digest) or index / manifest list
 * (manifests[].digest) names. Pure. A cached manifest is whatever upstream sent: anything that is
 * not a valid digest is left out, since digests become file paths.
 */
export function manifestReferences(doc: unknown): ManifestReferences {
  const record = (value: unknown): Record<string, unknown> => (typeof value === "object" && value !== null ? (value as Record<string, unknown>) : {});
  const digestsOf = (list: unknown): string[] => (Array.isArray(list) ? list.map((d) => record(d).digest).filter((d): d is string => typeof d === "string" && parseDigest(d) !== undefined) : []);
  const manifest = record(doc);
  return { manifests: digestsOf(manifest.manifests), blobs: digestsOf([manifest.config, ...(Array.isArray(manifest.layers) ? manifest.layers : [])]) };
}

/**
 * The tag `regcache cache rm` and DELETE /api/cache/images/... name, read as Docker does
 * (parseImageReference: "alpine" is registry-1.docker.io/library/alpine:latest). Tag answers are
 * recorded per host without the port, so a port is accepted and ignored. Pure.
 */
export function parseTaggedImage(input: string): TaggedImage {
  const ref = parseImageReference(input);
  if (parseDigest(ref.reference)) throw new ImageReferenceError(ref.original, "name a tag; to remove one digest, give the digest alone");
  return { host: ref.host, name: ref.name, tag: ref.reference };
}

export function formatTaggedImage(image: TaggedImage): string {
  return `${image.host}/${image.name}:${image.tag}`;
}
