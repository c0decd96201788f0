import type { Dispatcher } from "undici";
import { CLOCK_SKEW_MS } from "../cache/shared-records.js";
import type { Logger } from "../log/logger.js";
import type { Membership } from "./membership.js";
import type { PeerClient, PeerContentRequest, PeerTagAnswer, PeerTagRequest, ReplicatedTag } from "./peer-client.js";
import { LruMap } from "../util/lru-map.js";
import { rankMembers } from "./rendezvous.js";

/**
 * A tag is revalidated, and its answer recorded, at every pull: the same answer goes to the same
 * peer again only after this long (its `recorded` there lags by as much, which decides nothing
 * while the digest is the same).
 */
const TAG_RESEND_MS = 60_000;
/** Tag answers remembered as sent: bounded, since clients choose the tags. */
const TAGS_REMEMBERED = 10_000;

export interface ClusterStats {
  /** Content a peer served from its cache (or its own fill) to this replica. */
  peerFills: number;
  /** Content copied from a peer that held it: replication, or what upstream or the object store could not serve. */
  peerCopies: number;
  /** Tag answers learnt from a peer while upstream could not be reached. */
  peerTags: number;
  /** Requests to peers that failed, by reason. */
  peerErrors: Record<string, number>;
  /** Copies this replica asked a peer to keep. */
  replications: number;
  /** Tag answers this replica recorded and sent to the peer that keeps their second copy. */
  tagReplications: number;
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
  private readonly tagsSent = new LruMap<string, { signature: string; at: number }>(TAGS_REMEMBERED);

  constructor(
    readonly membership: Membership,
    private readonly client: PeerClient,
    private readonly logger: Logger,
    refusedConnections: Record<string, number> = {},
  ) {
    this.stats = { peerFills: 0, peerCopies: 0, peerTags: 0, peerErrors: {}, replications: 0, tagReplications: 0, refusedConnections };
  }

  get self(): string {
    return this.membership.self;
  }

  /** Live members (this replica included) by their rank for `key` (a digest, or tagRankKey): the first is its owner. */
  ranking(key: string): string[] {
    return rankMembers(key, [this.self, ...this.membership.live()]);
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
    for (const peer of this.peers(req.digest)) {
      const response = await this.copyFrom(peer, req, method);
      if (response?.statusCode === 200) return { response, peer };
      await response?.body.dump();
    }
    return undefined;
  }

  /** The live peers, this replica left out, in rank order for `digest`: the first is its owner unless this replica is. */
  peers(digest: string): string[] {
    return this.ranking(digest).filter((m) => m !== this.self);
  }

  /** What `peer` holds for the repository (its 404 when nothing); undefined when it cannot be asked. */
  async copyFrom(peer: string, req: Omit<PeerContentRequest, "mode">, method: "GET" | "HEAD" = "GET"): Promise<Dispatcher.ResponseData | undefined> {
    try {
      const response = await this.client.content(peer, { ...req, mode: "copy" }, method);
      if (response.statusCode === 200) this.stats.peerCopies += 1;
      return response;
    } catch (err) {
      this.failed(peer, "copy", err);
      return undefined;
    }
  }

  /**
   * The newest answer peers recorded for a tag. The first two of the tag's ranking are asked first:
   * every answer recorded anywhere is kept by its recorder and by the first of the ranking other
   * than the recorder (replicateTag), so one of those two has the newest unless membership moved;
   * only when neither has an answer is every other live peer asked.
   */
  async tagFromPeers(req: PeerTagRequest): Promise<PeerTagAnswer | undefined> {
    const ranking = this.ranking(tagRankKey(req.host, req.name, req.tag));
    const first = ranking.slice(0, 2).filter((m) => m !== this.self);
    return (await this.newestTag(first, req)) ?? (await this.newestTag(ranking.filter((m) => m !== this.self && !first.includes(m)), req));
  }

  private async newestTag(peers: string[], req: PeerTagRequest): Promise<PeerTagAnswer | undefined> {
    const answers = await Promise.all(
      peers.map((peer) =>
        this.client.tag(peer, req).catch((err: unknown) => {
          this.failed(peer, "tag", err);
          return undefined;
        }),
      ),
    );
    // A clock far ahead (another replica's error) would make its answers outrank every newer one.
    const horizon = Date.now() + CLOCK_SKEW_MS;
    return answers.filter((a): a is PeerTagAnswer => a !== undefined && a.recorded <= horizon).sort((a, b) => b.recorded - a.recorded)[0];
  }

  /**
   * A tag answer this replica recorded from upstream goes to the first live member of the tag's
   * ranking other than this replica, in the background, as blob copies do (replicate): losing
   * either replica then loses no tag.
   */
  replicateTag(answer: ReplicatedTag): void {
    const next = this.ranking(tagRankKey(answer.host, answer.name, answer.tag)).find((m) => m !== this.self);
    if (!next) return;
    const key = `${tagRankKey(answer.host, answer.name, answer.tag)}@${answer.acceptSet.join(",")}`;
    const signature = `${next} ${answer.entry.digest} ${answer.entry.mediaType} ${answer.publicSince !== undefined}`;
    const sent = this.tagsSent.get(key);
    if (sent?.signature === signature && Date.now() - sent.at < TAG_RESEND_MS) return;
    this.tagsSent.set(key, { signature, at: Date.now() });
    this.stats.tagReplications += 1;
    this.client.pushTag(next, answer, this.self).catch((err: unknown) => {
      // Not sent: the next record of this answer tries again.
      this.tagsSent.set(key, { signature: "", at: 0 });
      this.failed(next, "tag-copy", err);
    });
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

/** What a tag's place in the ranking is keyed by: host, repository and tag (every Accept set alike). */
export function tagRankKey(host: string, name: string, tag: string): string {
  return `${host}/${name}:${tag}`;
}
