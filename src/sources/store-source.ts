import { DigestMismatchError, SizeMismatchError, type Download } from "../cache/download.js";
import type { SharedCopy, SharedTier } from "../fleet/shared-tier.js";
import { UpstreamError } from "../upstream/upstream-error.js";
import { MAX_MANIFEST_BYTES, type ContentSource, type SourceAnswer, type SourceRequest } from "./content-source.js";

/**
 * The fleet's object store (--blob-store), for content it holds (`copy`: the index's row, or the
 * store's HEAD). Trusted for availability, never for integrity: its bytes are verified by the fill
 * like upstream's, and an object that does not match its digest leaves the store.
 */
export class StoreSource implements ContentSource {
  readonly via = "store";
  readonly name = "object store";

  constructor(
    private readonly shared: SharedTier,
    private readonly request: SourceRequest,
    private readonly copy: SharedCopy,
  ) {}

  async open(offset: number): Promise<SourceAnswer> {
    const { rr, target } = this.request;
    try {
      const { body, size } = await this.shared.open(target.digest, this.copy.size, offset);
      if (size !== this.copy.size) {
        body.destroy();
        throw new UpstreamError("protocol", rr.host, `the object store holds ${size} bytes for ${target.digest.value}, its row says ${this.copy.size}`);
      }
      return { kind: "body", body, size, mediaType: this.copy.mediaType, host: rr.host, maxSize: target.kind === "manifest" ? MAX_MANIFEST_BYTES : undefined, cache: "SHARED" };
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
