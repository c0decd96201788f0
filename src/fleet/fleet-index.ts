import { OCTET_STREAM } from "../oci/media-types.js";

/** A blob the shared object store holds, as the fleet index records it. */
export interface FleetBlob {
  digest: string;
  size: number;
  /** What it was cached as; absent in rows an older regcache wrote (then: a blob when mediaType is application/octet-stream). */
  kind?: "blob" | "manifest";
  /** As BlobEntry's: blobs application/octet-stream; manifests their declared type, or "" (then linkTypes). */
  mediaType: string;
  /** As BlobEntry's: per "host/repository", the label upstream gave a manifest that declares no type. */
  linkTypes?: Record<string, string>;
  /** "host/repository" pairs upstream confirmed it in (issue 10's links), most recent last, bounded. */
  links: string[];
  /** When it was uploaded (ms since the epoch); also its place in the LRU until it is read. */
  storedAt: number;
}

/** The result of asking for a lease: held by this caller (with the token that renews and releases it), or by someone else. */
export type LeaseResult = { held: true; token: string } | { held: false; holder: string };

/**
 * The fleet's shared index (--index redis://...): blob rows of the object store, their repository
 * links, shared records (tag answers, access verdicts), leases and the object store's LRU.
 *
 * Every method rejects with a RegcacheError of code SHARED_STORE, promptly (within about a
 * second), when the index cannot be reached; callers then act as a single replica would.
 */
export interface FleetIndex {
  getBlob(digest: string): Promise<FleetBlob | undefined>;
  putBlob(entry: FleetBlob): Promise<void>;
  /** Adds a link to an existing row, with the Content-Type upstream gave there (no row: nothing happens). */
  link(digest: string, hostRepository: string, contentType?: string): Promise<void>;
  deleteBlob(digest: string): Promise<void>;
  /** Records that the object was read now (the object store's LRU); batched, never rejects. */
  touch(digest: string): void;
  /** Digests with their last access, least recently used first, and their sizes: what the evictor reads. */
  leastRecentlyUsed(limit: number): Promise<{ digest: string; size: number; lastAccess: number }[]>;
  /** Of these digests, those without a row (one round trip for a page of the store's listing). */
  withoutRows(digests: string[]): Promise<string[]>;
  /** Total bytes of the rows. */
  storedBytes(): Promise<number>;

  /** Shared records: keys and values as CacheIndex's tag and meta records ("tag:<tagKey>", "meta:<kind>:<key>"). */
  getRecord<T>(key: string): Promise<T | undefined>;
  putRecord(key: string, value: unknown): Promise<void>;

  /** SET lease:<name> "<holder>|<token>" NX PX ttlMs. */
  acquireLease(name: string, holder: string, ttlMs: number): Promise<LeaseResult>;
  /** Extends a lease this caller still holds; false when it expired and someone else took it. */
  renewLease(name: string, token: string, ttlMs: number): Promise<boolean>;
  /** Deletes the lease if this caller still holds it. */
  releaseLease(name: string, token: string): Promise<void>;
  /** Whether anyone holds the lease now. */
  leaseHeld(name: string): Promise<boolean>;

  /** Whether the last command reached the index (for /readyz, /api/stats, /metrics). */
  readonly available: boolean;
  close(): Promise<void>;
}

/**
 * The kind and media type of a row: its own, or for a row an older regcache wrote (which kept
 * upstream's first Content-Type, not necessarily what the manifest declares) a manifest of
 * unknown type. An object found without a row is read the same way from its Content-Type
 * (uploads set the declared type, or application/json when there is none). Pure.
 */
export function rowTypes(row: Pick<FleetBlob, "kind" | "mediaType" | "linkTypes">): Required<Pick<FleetBlob, "kind" | "mediaType">> & Pick<FleetBlob, "linkTypes"> {
  if (row.kind) return { kind: row.kind, mediaType: row.mediaType, linkTypes: row.linkTypes };
  return row.mediaType === OCTET_STREAM ? { kind: "blob", mediaType: OCTET_STREAM } : { kind: "manifest", mediaType: "" };
}

/** What an object's Content-Type is in the store: a manifest that declares no type is application/json (see rowTypes). Pure. */
export function objectContentType(kind: "blob" | "manifest", mediaType: string): string {
  return kind === "blob" ? OCTET_STREAM : mediaType || "application/json";
}
