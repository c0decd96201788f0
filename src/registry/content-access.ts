import type { BlobStore } from "../cache/blob-store.js";
import type { SharedCopy, SharedTier } from "../fleet/shared-tier.js";
import type { AccessControl, AccessDecision, OfflineRule } from "./access-control.js";
import { contentPath, type ContentTarget } from "./content-target.js";
import { cachedContentStep } from "./link-policy.js";
import type { RegistryRequest } from "./request-context.js";

/**
 * What a client may be given of a digest in (host, repository), decided once per request, before
 * any source is opened (SECURITY.md's table):
 * - cached: a copy is held (this replica's disk or its fill in progress, or the fleet's object
 *   store), so access is settled as for any cached content; allowed, every source may serve, since
 *   the bytes of a digest are the same wherever they come from;
 * - upstream: nothing held is known to be in this repository, so only upstream's answer to this
 *   client can serve it (upstream's own, or a peer's fill asking upstream with the client's
 *   credentials); while upstream cannot answer, a copy a peer holds in the repository, as
 *   `offline` allows (present when there are peers to ask).
 */
export type ContentAccess = { kind: "cached"; decision: AccessDecision } | { kind: "upstream"; offline: OfflineRule | undefined };

/**
 * Where a copy of the content is held: on this replica (its disk, or a fill in progress), and in
 * the fleet's object store. `learnType`: a manifest held here whose type in this repository is not
 * known: upstream is asked even where it is linked, and its answer says the type (a label).
 */
export interface Held {
  local: boolean;
  store?: SharedCopy;
  learnType?: boolean;
}

export class ContentClearance {
  constructor(
    private readonly access: AccessControl,
    private readonly store: Pick<BlobStore, "isLinked" | "link">,
    private readonly shared: SharedTier | undefined,
    /** Whether there are peers whose copies a client may be given while upstream cannot answer. */
    private readonly peers: boolean,
  ) {}

  async decide(rr: RegistryRequest, target: ContentTarget, held: Held): Promise<ContentAccess> {
    if (!held.local && !held.store) return { kind: "upstream", offline: this.peers && !rr.fromPeer ? this.access.offlineRule(rr, target.name) : undefined };
    // Linked: settled as for any content of the repository. Not linked: upstream is asked whether
    // the repository has it, with the client's credentials, before anything is served (link-policy.ts);
    // its yes links it, with the Content-Type it gives there.
    const hostRepository = `${rr.host}/${target.name}`;
    const linked = this.store.isLinked(target.digest, hostRepository) || (held.store?.links?.includes(hostRepository) ?? false);
    const step = held.learnType ? "confirm" : cachedContentStep(linked);
    const decision = step === "authorize" ? await this.access.authorize(rr, target.name, contentPath(target)) : await this.access.confirmInRepository(rr, target.name, contentPath(target));
    if (decision.allowed && step === "confirm") {
      this.store.link(target.digest, hostRepository, decision.contentType);
      this.shared?.link(target.digest, hostRepository, decision.contentType);
    }
    return { kind: "cached", decision };
  }
}
