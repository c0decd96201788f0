import type { Download } from "../cache/download.js";
import type { Cluster } from "../cluster/cluster.js";
import { headerValue } from "../upstream/headers.js";
import { isUnavailableStatus } from "../upstream/upstream-error.js";
import { bodyOf, continuation, continuesAt, peerRequest, rangeFrom, type ContentSource, type SourceAnswer, type SourceRequest } from "./content-source.js";

/** What a peer's X-Cache says when the bytes came from the cluster's cache rather than upstream. */
const PEER_CACHED = new Set(["HIT", "STALE", "COALESCED", "PEER"]);

/** What the fleet counts of fills streamed from the replica holding its lease (shared-tier.ts). */
export interface HolderCounts {
  served(): void;
  /** The holder could not be asked or could not answer: this replica fetches upstream itself, a duplicate. */
  failed(): void;
}

/**
 * A peer that fills the content for this replica as if the client had asked it, with the client's
 * credentials: the digest's owner (cluster.ts), or the replica holding the fleet's lease on it,
 * whose growing file streams here. Its refusal (401, 403, 404) is upstream's answer to this client.
 * Its body is kept as the kind asked for, a manifest with the type the peer's source gave it in
 * this repository, kept here as that repository's label.
 */
export class PeerFillSource implements ContentSource {
  readonly name: string;

  constructor(
    private readonly cluster: Cluster,
    private readonly request: SourceRequest,
    private readonly peer: string,
    readonly via: "owner" | "holder",
    private readonly holder?: HolderCounts,
  ) {
    this.name = `${via} ${peer}`;
  }

  async open(offset: number, size?: number): Promise<SourceAnswer | undefined> {
    const response = await this.cluster.fillFromOwner(this.peer, peerRequest(this.request, rangeFrom(offset)));
    if (offset > 0) {
      if (response && continuesAt(response, offset, size!)) return continuation(this.request.target, response, this.request.rr.host, size!, "PEER");
      await response?.body.dump();
      return undefined;
    }
    if (response?.statusCode === 200) {
      this.holder?.served();
      return bodyOf(this.request.target, response, this.request.rr.host, PEER_CACHED.has(headerValue(response.headers["x-cache"]) ?? "") ? "PEER" : "MISS");
    }
    if (response && !isUnavailableStatus(response.statusCode)) return { kind: "refused", refusal: { kind: "upstream", response }, unavailable: false };
    await response?.body.dump();
    this.holder?.failed();
    return undefined;
  }

  /**
   * The copy this replica keeps of what the owner streams is the second one (see Cluster.replicate);
   * if it fails, another replica copies the owner's instead.
   */
  settled(download: Download | undefined): void {
    if (this.via !== "owner" || !download) return;
    const { rr, target } = this.request;
    download.done.catch(() => this.cluster.replicate({ kind: target.kind, host: rr.host, port: rr.port, name: target.name, digest: target.digest.value }, this.peer));
  }
}
