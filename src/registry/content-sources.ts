import type { BlobStore } from "../cache/blob-store.js";
import type { Download } from "../cache/download.js";
import type { Cluster } from "../cluster/cluster.js";
import type { HeldLease } from "../fleet/held-lease.js";
import type { SharedCopy, SharedTier } from "../fleet/shared-tier.js";
import type { Logger } from "../log/logger.js";
import { peerRequest, type ContentSource, type SourceRequest } from "../sources/content-source.js";
import { PeerCopySource } from "../sources/peer-copy-source.js";
import { PeerFillSource } from "../sources/peer-fill-source.js";
import { SourceChain } from "../sources/source-chain.js";
import { StoreSource, type UsableCopy } from "../sources/store-source.js";
import { UpstreamSource } from "../sources/upstream-source.js";
import type { UpstreamClient, UpstreamResponse } from "../upstream/client.js";
import { normalizeAccept } from "./accept.js";
import type { AccessControl, OfflineRule } from "./access-control.js";
import { cachedAnswer } from "./cached-answer.js";
import type { ContentAccess } from "./content-access.js";
import type { ContentTarget } from "./content-target.js";
import type { RegistryRequest } from "./request-context.js";

/** Where the fleet holds content this replica lacks, and whose turn its fill is: found before access is decided. */
export interface Located {
  /** The object store's copy, when it answers this request as a cached entry would, and as what type. */
  store?: UsableCopy;
  /** The replica holding the fleet's lease on filling it: its growing file streams from there. */
  holder?: string;
  /** The fleet's lease, this replica's: it fills from upstream for the whole fleet. */
  lease?: HeldLease;
}

/**
 * The sources of content this replica's disk lacks, as one chain per request (sources/): own disk
 * (the handler's hit), then the object store, the peers, upstream.
 * - Content the fleet holds (the client's access settled as for cached content): the object store,
 *   then any live peer holding it for the repository (rank order), then upstream.
 * - Content nobody here holds: a peer that fills it with the client's credentials (the digest's
 *   owner, cluster.ts; with a shared tier, the holder of the fleet's lease), upstream, and while
 *   upstream cannot answer, a peer's copy as the offline policy allows.
 * A source that fails mid-stream is continued by the ones after it (source-chain.ts).
 */
export class ContentSources {
  constructor(
    private readonly upstream: UpstreamClient,
    private readonly cluster: Cluster | undefined,
    readonly shared: SharedTier | undefined,
    private readonly store: Pick<BlobStore, "whenStored" | "fileOf">,
    private readonly access: Pick<AccessControl, "adoptPublicVerdict">,
    private readonly logger: Logger,
  ) {}

  get clustered(): boolean {
    return this.cluster !== undefined;
  }

  /**
   * What the object store holds; for a fill of content it lacks, the fleet's lease (or its holder).
   * The lease holder writes the row just before releasing it, so a lease taken here may find the
   * content stored meanwhile: then it is the store's copy, and the lease goes back.
   */
  async locate(rr: RegistryRequest, target: ContentTarget, forFill: boolean): Promise<Located> {
    const store = this.suited(rr, target, await this.shared?.find(target.digest));
    // A request from a peer is answered from here: taking a turn for it could go round in circles.
    if (store || !forFill || !this.shared || rr.fromPeer) return { store };
    const turn = await this.shared.turn(target.digest);
    if (turn.kind === "holder") return { holder: turn.holder };
    const since = turn.lease && this.suited(rr, target, await this.shared.storedSince(target.digest));
    if (!since) return { lease: turn.lease };
    turn.lease!.release();
    return { store: since };
  }

  /** The chain a fill of this request reads from, once the client's access is decided (content-access.ts). */
  fill(rr: RegistryRequest, target: ContentTarget, located: Located, access: ContentAccess): SourceChain {
    const request = { rr, target };
    const upstream = new UpstreamSource(this.upstream, request, located.lease, (download, lease) => this.afterUpstreamFill(rr, target, download, lease));
    if (access.kind === "cached") return this.chain(request, [located.store && new StoreSource(this.shared!, request, located.store), ...this.peerCopies(request), upstream]);
    return this.chain(request, [this.peerFill(request, located), upstream, ...this.peerCopies(request, access.offline)]);
  }

  /** A copy of what peers hold, never upstream: from `from` (replication), or any live peer in rank order. */
  copies(rr: RegistryRequest, target: ContentTarget, from?: string): SourceChain {
    const request = { rr, target };
    return this.chain(request, from ? [this.peerCopy(request, from)] : this.peerCopies(request));
  }

  /** The object store's copy alone (a manifest a recorded tag names). */
  stored(rr: RegistryRequest, target: ContentTarget, usable: UsableCopy): SourceChain {
    return this.chain({ rr, target }, [new StoreSource(this.shared!, { rr, target }, usable)]);
  }

  /** HEAD of content nobody here holds, while upstream cannot answer: a peer's copy, if any holds it. */
  async headFromPeers(rr: RegistryRequest, target: ContentTarget): Promise<UpstreamResponse | undefined> {
    return (await this.cluster?.copyFromPeers(peerRequest({ rr, target }), "HEAD"))?.response;
  }

  /**
   * The object store's copy, if there is one that answers this request exactly as the registry
   * would (cached-answer.ts: the kind asked for, a manifest of a type known in this repository
   * that the client's Accept names), with the type it is served as.
   */
  private suited(rr: RegistryRequest, target: ContentTarget, copy: SharedCopy | undefined): UsableCopy | undefined {
    const answer = copy && cachedAnswer(target.kind, copy, `${rr.host}/${target.name}`, normalizeAccept(rr.req.headers.accept));
    return answer?.kind === "serve" ? { copy: copy!, mediaType: answer.mediaType } : undefined;
  }

  private chain(request: SourceRequest, sources: (ContentSource | undefined)[]): SourceChain {
    const what = { digest: request.target.digest.value, host: request.rr.host, repository: request.target.name };
    return new SourceChain(sources.filter((s): s is ContentSource => s !== undefined), what, this.logger);
  }

  /** The peer that fills for this replica: the lease's holder, or without a shared tier the digest's owner. */
  private peerFill(request: SourceRequest, located: Located): ContentSource | undefined {
    const { rr, target } = request;
    if (!this.cluster || rr.fromPeer) return undefined;
    if (located.holder) return new PeerFillSource(this.cluster, request, located.holder, "holder", { served: () => this.shared?.holderServed(), failed: () => this.shared?.holderFailed() });
    const owner = this.cluster.ranking(target.digest.value)[0]!;
    return this.shared || owner === this.cluster.self ? undefined : new PeerFillSource(this.cluster, request, owner, "owner");
  }

  private peerCopies(request: SourceRequest, offline?: OfflineRule): ContentSource[] {
    if (!this.cluster || request.rr.fromPeer) return [];
    return this.cluster.peers(request.target.digest.value).map((peer) => this.peerCopy(request, peer, offline));
  }

  private peerCopy(request: SourceRequest, peer: string, offline?: OfflineRule): ContentSource {
    const { rr, target } = request;
    return new PeerCopySource(this.cluster!, request, peer, { adoptVerdict: (since) => this.access.adoptPublicVerdict(rr.host, target.name, since), offline });
  }

  /**
   * A fill from upstream is the cluster's or the fleet's first copy: a peer or the object store
   * keeps the second. A fill a peer asked for needs none: that peer keeps the copy it streams, and
   * a third transfer would only compete with the pull for CPU and network (bench/: the cluster's
   * cold pull). With a shared tier, the object store holds the second copy.
   */
  private afterUpstreamFill(rr: RegistryRequest, target: ContentTarget, download: Download, lease: HeldLease | undefined): void {
    // Once indexed: a manifest's kind and types are known only then (blob-store.ts reads what it declares).
    void this.store.whenStored(download).then((entry) => {
      if (!entry) return lease?.release();
      if (!rr.fromPeer && !this.shared) this.cluster?.replicate({ kind: target.kind, host: rr.host, port: rr.port, name: target.name, digest: target.digest.value });
      if (!this.shared) return lease?.release();
      const { size, kind, mediaType, linkTypes, links } = entry;
      this.shared.stored({ digest: target.digest, file: this.store.fileOf(target.digest), size, kind, mediaType, linkTypes, links: [...links] }, lease);
    });
  }
}
