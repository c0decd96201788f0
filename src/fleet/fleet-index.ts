/** A blob the shared object store holds, as the fleet index records it. */
export interface FleetBlob {
  digest: string;
  size: number;
  /** Manifests: exactly the Content-Type upstream sent. Blobs: application/octet-stream. */
  mediaType: string;
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
  /** Adds a link to an existing row (no row: nothing happens). */
  link(digest: string, hostRepository: string): Promise<void>;
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

  /** Whether the last command reached the index (for /readyz, /api/stats, /metrics). */
  readonly available: boolean;
  close(): Promise<void>;
}
