import type { TagEntry } from "../cache/cache-index.js";
import type { RecordedTags, TagName } from "../cache/recorded-tags.js";
import type { Cluster } from "../cluster/cluster.js";
import type { PeerTagAnswer, ReplicatedTag } from "../cluster/peer-client.js";
import type { Logger } from "../log/logger.js";
import { parseDigest } from "../oci/digest.js";
import type { AccessControl } from "./access-control.js";
import type { ContentHandler } from "./content-handler.js";
import type { RegistryRequest } from "./request-context.js";

/**
 * Tag answers across replicas. Each answer a replica records from upstream is kept by a second
 * live replica (cluster.ts replicateTag), with what keeps private content private: the manifest
 * it names is copied from the recorder only if the recorder holds it linked to the repository
 * (a peer copy), and the recorder's public verdict travels with it. A replica that keeps a copy
 * serves it only as any recorded answer: revalidated upstream while upstream answers, and while
 * it does not, under the offline policy (--offline-access).
 */
export class TagPeers {
  constructor(
    private readonly cluster: Cluster,
    private readonly records: RecordedTags,
    private readonly content: Pick<ContentHandler, "keepCopy">,
    private readonly access: Pick<AccessControl, "settledPublicSince" | "publicSince" | "adoptPublicVerdict">,
    private readonly logger: Logger,
  ) {}

  /** After this replica recorded upstream's answer: the second copy, sent in the background. */
  recorded(rr: RegistryRequest, tag: TagName, acceptSet: readonly string[], entry: TagEntry): void {
    void this.access.settledPublicSince(tag.host, tag.name).then(
      (publicSince) => this.cluster.replicateTag({ host: tag.host, port: rr.port, name: tag.name, tag: tag.tag, acceptSet, entry, publicSince }),
      (err: unknown) => this.logger.warn({ err, repository: tag.name }, "tag answer not sent to its second replica"),
    );
  }

  /**
   * An answer `from` recorded and sent here: kept where it is newer than what this replica holds,
   * with the peer's public verdict, and the manifest it names copied from that peer (linked to the
   * repository there, or not copied at all). `rr`: a request with no client (peer-services.ts).
   * Never rejects: no one waits for it.
   */
  async receive(rr: RegistryRequest, from: string, answer: ReplicatedTag): Promise<void> {
    const where = { from, host: answer.host, repository: answer.name, tag: answer.tag, digest: answer.entry.digest };
    try {
      if (answer.publicSince !== undefined) await this.access.adoptPublicVerdict(answer.host, answer.name, answer.publicSince);
      await this.records.keepNewer({ host: answer.host, name: answer.name, tag: answer.tag }, answer.acceptSet, answer.entry);
      const digest = parseDigest(answer.entry.digest);
      const kept = digest && (await this.content.keepCopy(rr, { kind: "manifest", name: answer.name, digest }, from));
      this.logger.debug({ ...where, manifestKept: kept !== undefined }, "kept a tag answer a peer recorded");
    } catch (err) {
      this.logger.warn({ ...where, err }, "cannot keep a tag answer a peer recorded");
    }
  }

  /** For a peer: the answer recorded here for a tag and Accept set, or for any, with this replica's public verdict. */
  async answer(host: string, name: string, tag: string, acceptSet: readonly string[]): Promise<PeerTagAnswer | undefined> {
    const target = { host, name, tag };
    const answer = (await this.records.forAccept(target, acceptSet)) ?? (await this.records.latest(target));
    if (!answer) return undefined;
    const publicSince = await this.access.publicSince(host, name);
    return publicSince === undefined ? answer : { ...answer, publicSince };
  }

  /** While upstream cannot answer: the newest answer the peers recorded (their public verdict adopted). */
  async newest(rr: RegistryRequest, tag: TagName, acceptSet: readonly string[]): Promise<TagEntry | undefined> {
    const found = await this.cluster.tagFromPeers({ host: rr.host, port: rr.port, name: tag.name, tag: tag.tag, acceptSet });
    if (!found) return undefined;
    const { publicSince, ...entry } = found;
    if (publicSince !== undefined) await this.access.adoptPublicVerdict(rr.host, tag.name, publicSince);
    return entry;
  }

  /** A peer's answer this replica serves: kept for this Accept set (upstream did not give it to this replica). */
  async adopt(tag: TagName, acceptSet: readonly string[], entry: TagEntry): Promise<void> {
    this.cluster.stats.peerTags += 1;
    await this.records.adopt(tag, acceptSet, entry);
  }
}
