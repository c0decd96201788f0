import type { Readable } from "node:stream";
import type { Digest } from "../oci/digest.js";

/** One object of the shared store, as listed for the fleet's evictor. */
export interface StoredObject {
  digest: string;
  size: number;
  /** ms since the epoch */
  lastModified: number;
}

/**
 * The fleet's shared blob tier (--blob-store): one object per digest, in the data directory's
 * layout ("<prefix>/blobs/<algorithm>/<hex[0:2]>/<hex>"). Bytes read from it are verified by the
 * caller like bytes from upstream: the store is trusted for availability, never for integrity.
 *
 * Every method rejects with a RegcacheError of code SHARED_STORE when the store cannot be
 * reached or answers with an error, promptly (bounded timeouts): callers then fall back to
 * the local tier and upstream.
 */
export interface ObjectStore {
  /** The object's size and Content-Type (a manifest's media type), or undefined when the store has no such object. */
  head(digest: Digest): Promise<{ size: number; mediaType: string | undefined } | undefined>;
  /**
   * The object's bytes (all of them, or [start, end] inclusive), or undefined when absent.
   * `signal`: the caller gave up; the request ends at once and rejects with the signal's reason.
   */
  get(digest: Digest, range?: { start: number; end: number }, signal?: AbortSignal): Promise<{ body: Readable; size: number } | undefined>;
  /** Uploads a local file that already matched its digest (multipart when large), with its media type as Content-Type. */
  put(digest: Digest, file: string, size: number, mediaType: string): Promise<void>;
  delete(digest: Digest): Promise<void>;
  /** Every object under the prefix. */
  list(): AsyncIterable<StoredObject>;
  close(): void;
}
