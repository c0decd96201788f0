import type { Dispatcher } from "undici";
import type { TagEntry } from "../cache/cache-index.js";
import type { Logger } from "../log/logger.js";
import type { Membership } from "./membership.js";
import type { PeerClient, PeerContentRequest, PeerTagRequest } from "./peer-client.js";
import { rankMembers } from "./rendezvous.js";

export interface ClusterStats {
  /** Content a peer served from its cache (or its own fill) to this replica. */
  peerFills: number;
  /** Content copied from a peer while upstream could not be reached. */
  peerCopies: number;
  /** Tag answers learnt from a peer while upstream could not be reached. */
  peerTags: number;
  /** Requests to peers that failed, by reason. */
  peerErrors: Record<string, number>;
  /** Copies this replica asked a peer to keep. */
  replications: number;
  /** Connections the peer port refused, by cause (refusal-log.ts). */
  refusedConnections: Record<string, number>;
}

/**
 * The replicas as one cache: each digest has an owner (rendezvous hashing over the live members),
 * which fills it from upstream once for the whole cluster; the others take it from the owner.
 * When upstream cannot be reached, any live peer that holds a digest for the repository hands it over.
 */
export class Cluster {
  readonly stats: ClusterStats;

  constructor(
    readonly membership: Membership,
    private readonly client: PeerClient,
    private readonly logger: Logger,
    refusedConnections: Record<string, number> = {},
  ) {
    this.stats = { peerFills: 0, peerCopies: 0, peerTags: 0, peerErrors: {}, replications: 0, refusedConnections };
  }

  get self(): string {
    return this.membership.self;
  }

  /** Live members (this replica included) by their rank for `digest`: the first is its owner. */
  ranking(digest: string): string[] {
    return rankMembers(digest, [this.self, ...this.membership.live()]);
  }

  /** The owner's answer for content this replica lacks; undefined when the owner cannot be asked. */
  async fillFromOwner(owner: string, req: Omit<PeerContentRequest, "mode">): Promise<Dispatcher.ResponseData | undefined> {
    try {
      const response = await this.client.content(owner, { ...req, mode: "fill" });
      if (response.statusCode === 200) this.stats.peerFills += 1;
      return response;
    } catch (err) {
      this.failed(owner, "fill", err);
      return undefined;
    }
  }

  /** A copy from the first live peer (in rank order) that holds the digest for the repository. */
  async copyFromPeers(req: Omit<PeerContentRequest, "mode">, method: "GET" | "HEAD" = "GET"): Promise<{ response: Dispatcher.ResponseData; peer: string } | undefined> {
    for (const peer of this.ranking(req.digest).filter((m) => m !== this.self)) {
      try {
        const response = await this.client.content(peer, { ...req, mode: "copy" }, method);
        if (response.statusCode === 200) {
          this.stats.peerCopies += 1;
          return { response, peer };
        }
        await response.body.dump();
      } catch (err) {
        this.failed(peer, "copy", err);
      }
    }
    return undefined;
  }

  /** What `peer` holds for the repository, for a copy this replica keeps (replication). */
  async copyFrom(peer: string, req: Omit<PeerContentRequest, "mode">): Promise<Dispatcher.ResponseData | undefined> {
    try {
      return await this.client.content(peer, { ...req, mode: "copy" });
    } catch (err) {
      this.failed(peer, "copy", err);
      return undefined;
    }
  }

  /** The newest answer any live peer recorded for a tag. */
  async tagFromPeers(req: PeerTagRequest): Promise<TagEntry | undefined> {
    const answers = await Promise.all(
      this.membership.live().map((peer) =>
        this.client.tag(peer, req).catch((err: unknown) => {
          this.failed(peer, "tag", err);
          return undefined;
        }),
      ),
    );
    const newest = answers.filter((a): a is TagEntry => a !== undefined).sort((a, b) => b.recorded - a.recorded)[0];
    if (newest) this.stats.peerTags += 1;
    return newest;
  }

  /**
   * After `holder` (this replica, unless named) filled a digest from upstream, the next live member
   * in the ranking after it keeps a copy too: losing any one replica then loses nothing.
   */
  replicate(req: Omit<PeerContentRequest, "mode" | "headers">, holder = this.self): void {
    const next = this.ranking(req.digest).find((m) => m !== holder);
    if (!next) return;
    this.stats.replications += 1;
    this.client.replicate(next, req, holder).catch((err: unknown) => this.failed(next, "replicate", err));
  }

  private failed(peer: string, what: string, err: unknown): void {
    const reason = `${what}: ${(err as { code?: string }).code ?? "error"}`;
    this.stats.peerErrors[reason] = (this.stats.peerErrors[reason] ?? 0) + 1;
    this.membership.reportFailure(peer, (err as Error).message);
    this.logger.warn({ peer, what, err: (err as Error).message }, "peer request failed");
  }
}
