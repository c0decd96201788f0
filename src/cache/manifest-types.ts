import { isManifestMediaType, OCTET_STREAM } from "../oci/media-types.js";

/**
 * A manifest's media type, the same bytes in every registry: the type it declares (its mediaType
 * field) when it has one, for every repository; otherwise the type upstream labelled it with in
 * each (host, repository), served only there. A Content-Type that is not a manifest type
 * (text/plain, application/json) is never kept: a type nobody accepts would make the content
 * unservable. Pure.
 */

/** The fields of a cached entry (BlobEntry, or the fleet's FleetBlob) that say its type. */
export interface TypedEntry {
  /** Absent in rows written before kinds. */
  kind?: "blob" | "manifest";
  mediaType: string;
  linkTypes?: Record<string, string>;
  links: string[];
  legacyMediaType?: string;
}

/** What a cached entry is served as in "host/repository"; undefined: a manifest whose type there is not known yet. */
export function servedType(entry: Pick<TypedEntry, "kind" | "mediaType" | "linkTypes">, hostRepository: string): string | undefined {
  if (entry.kind === "blob") return OCTET_STREAM;
  return entry.mediaType || entry.linkTypes?.[hostRepository];
}

/**
 * Keeps the label upstream gave a manifest that declares no type, for one linked repository;
 * types of repositories no longer linked go (links are bounded). Says whether the entry changed.
 */
export function recordLinkType(entry: TypedEntry, hostRepository: string, contentType: string | undefined): boolean {
  if (entry.kind !== "manifest" || entry.mediaType || !isManifestMediaType(contentType) || !entry.links.includes(hostRepository)) return false;
  const types = (entry.linkTypes ??= {});
  if (types[hostRepository] === contentType) return false;
  types[hostRepository] = contentType!;
  for (const kept of Object.keys(types)) if (!entry.links.includes(kept)) delete types[kept];
  return true;
}

/**
 * A row from before kinds (index schema 2): a blob when it was served as one, else a manifest
 * whose type is unknown until start-up reads it (manifest-file.ts); meanwhile its old
 * Content-Type is kept aside, for the repository that cached it.
 */
export function upgradeMediaType(entry: TypedEntry): void {
  if (entry.mediaType === OCTET_STREAM) {
    entry.kind = "blob";
    return;
  }
  entry.kind = "manifest";
  entry.legacyMediaType = entry.mediaType;
  entry.mediaType = "";
}

/**
 * A legacy row's types once its manifest has been read: the declared type; or, for a manifest that
 * declares none, the old Content-Type for the first repository it was linked to (the one that
 * cached it), when that was a manifest type. Other repositories learn theirs at their next
 * confirmation with upstream.
 */
export function settleLegacyType(entry: TypedEntry, declared: string | undefined): void {
  const legacy = entry.legacyMediaType;
  delete entry.legacyMediaType;
  entry.mediaType = declared ?? "";
  if (!declared && entry.links[0] !== undefined) recordLinkType(entry, entry.links[0], legacy);
}
