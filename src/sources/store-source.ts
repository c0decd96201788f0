import { DigestMismatchError, SizeMismatchError, type Download } from "../cache/download.js";
import type { SharedCopy, SharedTier } from "../fleet/shared-tier.js";
import { MAX_MANIFEST_BYTES } from "../oci/media-types.js";
import { UpstreamError } from "../upstream/upstream-error.js";
import type { ContentSource, SourceAnswer, SourceRequest } from "./content-source.js";

/**
 * The object store's copy of a digest, and the type it answers this request as: a blob's
 * OCTET_STREAM, a manifest's declared type or its label in the repository asked for
 * (cache/manifest-types.ts: servedType), one the client's Accept names (registry/cached-answer.ts).
 */
export interface UsableCopy {
  copy: SharedCopy;
  mediaType: string;
}

/**
 * The fleet's object store (--blob-store), for content it holds (the index's row, or the store's
 * HEAD). Trusted for availability, never for integrity: its bytes are verified by the fill like
 * upstream's, and an object that does not match its digest leaves the store.
 */
export class StoreSource implements ContentSource {
  readonly via = "store";
  readonly name = "object store";

  constructor(
    private readonly shared: SharedTier,
    private readonly request: SourceRequest,
    private readonly usable: UsableCopy,
  ) {}

  async open(offset: number): Promise<SourceAnswer> {
    const { rr, target } = this.request;
    const { copy, mediaType } = this.usable;
    try {
      const { body, size } = await this.shared.open(target.digest, copy.size, offset);
      if (size !== copy.size) {
        body.destroy();
        throw new UpstreamError("protocol", rr.host, `the object store holds ${size} bytes for ${target.digest.value}, its row says ${copy.size}`);
      }
      return { kind: "body", content: target.kind, body, size, mediaType, host: rr.host, maxSize: target.kind === "manifest" ? MAX_MANIFEST_BYTES : undefined, cache: "SHARED" };
    } catch (err) {
      rr.log.sharedError = (err as Error).message;
      throw err;
    }
  }

  /** An object that does not match its digest is no copy at all: it leaves the store, and the next request goes elsewhere. */
  settled(download: Download | undefined): void {
    download?.done.catch((err: unknown) => {
      if (err instanceof DigestMismatchError || err instanceof SizeMismatchError) this.shared.discard(this.request.target.digest);
    });
  }
}
