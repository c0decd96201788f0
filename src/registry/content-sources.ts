import { finished } from "node:stream";
import type { OpenResult } from "../cache/blob-store.js";
import type { Cluster } from "../cluster/cluster.js";
import type { HeldLease } from "../fleet/held-lease.js";
import type { SharedCopy, SharedTier } from "../fleet/shared-tier.js";
import { servedType } from "../cache/manifest-types.js";
import { MAX_MANIFEST_BYTES, OCTET_STREAM } from "../oci/media-types.js";
import type { UpstreamClient, UpstreamResponse } from "../upstream/client.js";
import { headerValue, upstreamRequestHeaders } from "../upstream/headers.js";
import { requestFollowingRedirects } from "../upstream/redirects.js";
import { isUnavailableStatus, UpstreamError } from "../upstream/upstream-error.js";
import { acceptNames, normalizeAccept } from "./accept.js";
import { contentPath, type ContentTarget } from "./content-target.js";
import type { RegistryRequest } from "./request-context.js";

/** Conditional and range headers describe the client's view; the cache fetches whole, unconditional bodies. */
const NOT_FORWARDED_ON_FILL = ["range", "if-range", "if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "content-length"];
/** What a peer may pass on from the client: its credentials and what it accepts, nothing else. */
const FORWARDED_TO_PEERS = ["authorization", "accept", "user-agent"];

/**
 * Where the bytes of a digest this replica lacks come from, in order:
 * - owner: the replica that owns the digest (cluster.ts) serves or fills it, once for the cluster;
 * - upstream: the registry itself, with the client's credentials (when there is no owner to ask,
 *   or it cannot be reached);
 * - copy: while upstream cannot be reached, any live peer that holds it for this repository.
 * With a shared tier (--blob-store, --index), the owner's place is taken by:
 * - shared: the object store, read into the local tier;
 * - holder: the replica holding the fleet's lease on the digest, which streams its fill.
 */
export type ContentVia = "owner" | "upstream" | "copy" | "shared" | "holder";

/**
 * peerCache: the owner's X-Cache, or the peer a copy came from; publicSince: when that peer last
 * found the repository public; lease: the fleet's lease on filling it, held until it is stored.
 */
export type SourcedResult = OpenResult<UpstreamResponse> & { via?: ContentVia; peerCache?: string; publicSince?: number; lease?: HeldLease };

export class ContentSources {
  constructor(
    private readonly upstream: UpstreamClient,
    private readonly cluster: Cluster | undefined,
    readonly shared: SharedTier | undefined,
  ) {}

  /** Opens the first source that answers; a refusal (401/403/404) from the owner, the lease holder or upstream is final. */
  async open(rr: RegistryRequest, target: ContentTarget): Promise<SourcedResult> {
    // A request from a peer is answered from here: forwarding it again could go round in circles.
    const cluster = rr.fromPeer ? undefined : this.cluster;
    let lease: HeldLease | undefined;
    if (this.shared && !rr.fromPeer) {
      const turn = await this.shared.turn(target.digest);
      if (turn.kind === "mine") {
        lease = turn.lease;
        const stored = lease && (await this.shared.storedSince(target.digest));
        const type = stored && stored.kind === target.kind ? servedType(stored, `${rr.host}/${target.name}`) : undefined;
        if (stored && type !== undefined && (target.kind === "blob" || acceptNames(normalizeAccept(rr.req.headers.accept), type))) {
          lease!.release();
          lease = undefined;
          const confirmed = await this.confirmedFromStore(rr, target, stored, type);
          if (confirmed) return confirmed;
        }
      } else {
        // The holder cannot be asked or cannot answer: this replica fetches upstream itself, a counted duplicate.
        const held = await this.fillFromPeer(rr, target, turn.holder, "holder");
        if (held?.kind === "body") this.shared.holderServed();
        if (held) return held;
        this.shared.holderFailed();
      }
    } else if (cluster) {
      const owner = cluster.ranking(target.digest.value)[0]!;
      if (owner !== cluster.self) {
        const request = this.peerRequest(rr, target);
        const filled = await this.fillFromPeer(rr, target, owner, "owner", request);
        // The copy this replica keeps of what it streams is the second one (see replicate); if the
        // stream breaks, another replica copies the owner's instead.
        if (filled?.kind === "body") {
          finished(filled.body, (err) => {
            if (err) cluster.replicate(request, owner);
          });
        }
        if (filled) return filled;
      }
    }
    let failure: unknown;
    try {
      const result = await this.fromUpstream(rr, target);
      if (result.kind === "body") return { ...result, via: "upstream", lease };
      lease?.release();
      if (!cluster || !isUnavailableStatus(result.response.statusCode)) return { ...result, via: "upstream" };
      failure = result;
    } catch (err) {
      lease?.release();
      if (!cluster || !(err instanceof UpstreamError) || err.failure === "refused-address") throw err;
      failure = err;
    }
    const copy = await cluster.copyFromPeers(this.peerRequest(rr, target));
    if (copy) return { ...this.body(target, copy.response, rr.host), via: "copy", peerCache: copy.peer, publicSince: Number(headerValue(copy.response.headers["x-regcache-public-since"])) || undefined };
    if (failure instanceof Error) throw failure;
    return { ...(failure as SourcedResult), via: "upstream" };
  }

  /**
   * The fill `peer` (the digest's owner, or the holder of its lease) makes or has made, streamed
   * from it; its refusal, which is final; or undefined when it cannot be asked or cannot answer.
   */
  private async fillFromPeer(rr: RegistryRequest, target: ContentTarget, peer: string, via: "owner" | "holder", request = this.peerRequest(rr, target)): Promise<SourcedResult | undefined> {
    const response = await this.cluster?.fillFromOwner(peer, request);
    if (response?.statusCode === 200) return { ...this.body(target, response, rr.host), via, peerCache: headerValue(response.headers["x-cache"]) };
    if (response && !isUnavailableStatus(response.statusCode)) return { kind: "refused", response };
    await response?.body.dump();
    return undefined;
  }

  /**
   * Content stored by another replica between this one's lookup and its lease: when upstream says
   * this client may read it there (a HEAD with its credentials), the bytes come from the store.
   * Otherwise (a refusal, or no answer) undefined: upstream's GET gives the client its own answer.
   */
  private async confirmedFromStore(rr: RegistryRequest, target: ContentTarget, stored: SharedCopy, mediaType: string): Promise<SourcedResult | undefined> {
    const confirmed = await requestFollowingRedirects(this.upstream, {
      host: rr.host,
      port: rr.port,
      method: "HEAD",
      path: contentPath(target),
      headers: upstreamRequestHeaders(rr.req.headers, NOT_FORWARDED_ON_FILL),
    }).then(
      async ({ response }) => {
        await response.body.dump();
        return response.statusCode === 200;
      },
      () => false,
    );
    return confirmed ? this.openShared(rr, target, stored, mediaType).catch(() => undefined) : undefined;
  }

  /** The object store's copy of content it holds (find() said so), served as `mediaType` here, for a fill of the local tier. */
  async openShared(rr: RegistryRequest, target: ContentTarget, copy: SharedCopy, mediaType: string): Promise<SourcedResult> {
    const { body, size } = await this.shared!.open(target.digest, copy.size);
    if (size !== copy.size) {
      body.destroy();
      throw new UpstreamError("protocol", rr.host, `the object store holds ${size} bytes for ${target.digest.value}, its row says ${copy.size}`);
    }
    return { kind: "body", content: target.kind, body, size, mediaType, host: rr.host, maxSize: target.kind === "manifest" ? MAX_MANIFEST_BYTES : undefined, via: "shared" };
  }

  /** A copy of what one peer holds (replication, or a manifest a recorded tag names): never upstream. */
  async openCopy(rr: RegistryRequest, target: ContentTarget, from?: string): Promise<SourcedResult> {
    const request = this.peerRequest(rr, target);
    const copy = from ? await this.cluster?.copyFrom(from, request).then((response) => response && { response, peer: from }) : await this.cluster?.copyFromPeers(request);
    if (!copy) throw new UpstreamError("connect", rr.host, "no replica holds this content");
    if (copy.response.statusCode !== 200) return { kind: "refused", response: copy.response, via: "copy" };
    return { ...this.body(target, copy.response, rr.host), via: "copy", peerCache: copy.peer, publicSince: Number(headerValue(copy.response.headers["x-regcache-public-since"])) || undefined };
  }

  get clustered(): boolean {
    return this.cluster !== undefined;
  }

  /**
   * After a fill from upstream, a second replica keeps a copy (cluster.ts). A fill a peer asked for
   * needs none: that peer keeps the copy it streams, and a third transfer would only compete with
   * the pull for CPU and network (bench/: the cluster's cold pull).
   */
  replicate(rr: RegistryRequest, target: ContentTarget): void {
    // With a shared tier, the object store holds the second copy.
    if (rr.fromPeer || this.shared) return;
    this.cluster?.replicate({ kind: target.kind, host: rr.host, port: rr.port, name: target.name, digest: target.digest.value });
  }

  /** HEAD of content nobody here holds, while upstream cannot answer: a peer's copy, if any holds it. */
  async headFromPeers(rr: RegistryRequest, target: ContentTarget): Promise<UpstreamResponse | undefined> {
    return (await this.cluster?.copyFromPeers(this.peerRequest(rr, target), "HEAD"))?.response;
  }

  peerRequest(rr: RegistryRequest, target: ContentTarget) {
    const headers: Record<string, string> = {};
    for (const name of FORWARDED_TO_PEERS) {
      const value = headerValue(rr.req.headers[name]);
      if (value) headers[name] = value;
    }
    return { kind: target.kind, host: rr.host, port: rr.port, name: target.name, digest: target.digest.value, headers };
  }

  private async fromUpstream(rr: RegistryRequest, target: ContentTarget): Promise<OpenResult<UpstreamResponse>> {
    const { response, host } = await requestFollowingRedirects(this.upstream, {
      host: rr.host,
      port: rr.port,
      method: "GET",
      path: contentPath(target),
      headers: upstreamRequestHeaders(rr.req.headers, NOT_FORWARDED_ON_FILL),
    });
    rr.log.upstreamStatus = response.statusCode;
    if (host !== rr.host) rr.log.upstreamHost = host;
    if (response.statusCode !== 200) return { kind: "refused", response };
    return this.body(target, response, host);
  }

  private body(target: ContentTarget, response: UpstreamResponse, host: string): OpenResult<UpstreamResponse> {
    const length = headerValue(response.headers["content-length"]);
    const size = length !== undefined && /^\d+$/.test(length) ? Number(length) : undefined;
    // A manifest's Content-Type is what its source labelled it with for this repository: the one
    // client that started the fill gets it as upstream's answer; the cache keeps it only as a label (manifest-types.ts).
    const mediaType = target.kind === "blob" ? OCTET_STREAM : (headerValue(response.headers["content-type"]) ?? OCTET_STREAM);
    if (target.kind === "blob") return { kind: "body", content: "blob", body: response.body, size, mediaType, host };
    if (size !== undefined && size > MAX_MANIFEST_BYTES) {
      response.body.destroy();
      throw new UpstreamError("protocol", host, `manifest of ${size} bytes is over the ${MAX_MANIFEST_BYTES}-byte limit`);
    }
    return { kind: "body", content: "manifest", body: response.body, size, mediaType, host, maxSize: MAX_MANIFEST_BYTES };
  }
}
