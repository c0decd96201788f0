import { Readable } from "node:stream";
import type { BlobEntry } from "../cache/cache-index.js";
import { servedType } from "../cache/manifest-types.js";
import { settleAccess, type AccessControl } from "./access-control.js";
import type { BlobStore } from "../cache/blob-store.js";
import type { Download } from "../cache/download.js";
import type { RangeSource } from "../cache/range-source.js";
import type { Refusal, SourceRefusal } from "../sources/content-source.js";
import type { ChainBody, SourceChain } from "../sources/source-chain.js";
import type { UpstreamClient, UpstreamResponse } from "../upstream/client.js";
import { headerValue, upstreamRequestHeaders } from "../upstream/headers.js";
import { isUnavailableStatus, isUpstreamOutage, UpstreamError } from "../upstream/upstream-error.js";
import { normalizeAccept } from "./accept.js";
import { cachedAnswer, type CachedAnswer, type NotFromCache } from "./cached-answer.js";
import type { ContentAccess, ContentClearance } from "./content-access.js";
import type { ContentSources } from "./content-sources.js";
import { contentPath, type ContentTarget } from "./content-target.js";
import { sendFailure } from "./errors.js";
import { passThrough, relayUpstreamResponse, requestAsIs } from "./pass-through.js";
import { contentEtag, contentReply, type Representation } from "./content-reply.js";
import { planRange } from "./range.js";
import { errorReply, writeReply } from "./reply.js";
import type { CacheStatus, RegistryRequest } from "./request-context.js";

/**
 * GET and HEAD of blobs and manifests by digest: immutable, so served from the cache when present,
 * else fetched once (coalesced) and streamed while stored. Each request's access is decided once
 * (content-access.ts), before anything is opened; a fill then reads one stream from the chain of
 * sources (content-sources.ts). What the cache cannot answer exactly as the registry would is
 * forwarded (cached-answer.ts).
 */
export class ContentHandler {
  constructor(
    private readonly store: BlobStore,
    private readonly upstream: UpstreamClient,
    private readonly access: AccessControl,
    private readonly clearance: ContentClearance,
    private readonly sources: ContentSources,
  ) {}

  async handle(rr: RegistryRequest, target: ContentTarget): Promise<void> {
    if (await this.servedFromDisk(rr, target)) return;
    if (rr.req.method === "GET") await this.fillAndServe(rr, target);
    else await this.head(rr, target);
  }

  /**
   * Serves what this replica's disk holds, or forwards what it cannot answer as the registry
   * would, or sends the refusal; false when it holds nothing.
   */
  private async servedFromDisk(rr: RegistryRequest, target: ContentTarget, cache: CacheStatus = "HIT"): Promise<boolean> {
    const entry = await this.cachedEntry(target);
    if (!entry) return false;
    const hostRepository = `${rr.host}/${target.name}`;
    const acceptSet = normalizeAccept(rr.req.headers.accept);
    let answer: CachedAnswer = cachedAnswer(target.kind, entry, hostRepository, acceptSet);
    if (answer.kind === "forward" && answer.reason !== "media-type") return this.notFromCache(rr, target, entry, answer);
    // A manifest whose type here is not known is confirmed with upstream, whose answer says it.
    if (!(await this.settled(rr, await this.clearance.decide(rr, target, { local: true, learnType: answer.kind === "forward" })))) return true;
    answer = cachedAnswer(target.kind, entry, hostRepository, acceptSet);
    if (answer.kind === "forward") return this.notFromCache(rr, target, entry, answer);
    await this.serveCached(rr, target, entry, answer.mediaType, cache);
    return true;
  }

  /** What the cache cannot answer as the registry would: forwarded, or served while upstream is down (forwardUnlessDown). */
  private notFromCache(rr: RegistryRequest, target: ContentTarget, entry: BlobEntry, answer: Extract<CachedAnswer, { kind: "forward" }>): Promise<true> {
    return answer.reason === "accept" ? this.forwardUnlessDown(rr, target, entry, answer.mediaType) : this.forward(rr, answer.reason);
  }

  /**
   * A cached manifest asked for with an Accept that does not name its type: upstream's answer,
   * relayed (registries differ on those, accept.ts). While upstream cannot answer, the cached
   * bytes as their type here, as a registry serves a manifest by digest, to a client the access
   * policy allows offline: the same client gets the manifest by tag then (a stale tag answer).
   */
  private async forwardUnlessDown(rr: RegistryRequest, target: ContentTarget, entry: BlobEntry, mediaType: string): Promise<true> {
    rr.log.forwarded = "accept";
    let response: UpstreamResponse | undefined;
    try {
      response = await requestAsIs(this.upstream, rr);
    } catch (err) {
      if (!isUpstreamOutage(err)) {
        sendFailure(rr, err);
        return true;
      }
      rr.log.upstreamStatus = 0;
    }
    if (response && !isUnavailableStatus(response.statusCode)) {
      relayUpstreamResponse(rr, response, "BYPASS");
      return true;
    }
    if (response) {
      rr.log.upstreamStatus = response.statusCode;
      // Not read: an error page that stalls would hold the cached answer, and the connection, until --body-timeout.
      response.body.destroy();
    }
    rr.log.forwarded = undefined;
    if (await this.settled(rr, await this.clearance.decide(rr, target, { local: true }))) await this.serveCached(rr, target, entry, mediaType);
    return true;
  }

  /** Relays the upstream's own answer to this request, uncached: the cache cannot give the registry's. */
  private async forward(rr: RegistryRequest, reason: NotFromCache | "range"): Promise<true> {
    rr.log.forwarded = reason;
    await passThrough(this.upstream, rr, "BYPASS");
    return true;
  }

  /** Logs how access was settled and answers a refusal (upstream's own answer, relayed, when it denied); says whether to serve. */
  private async settled(rr: RegistryRequest, access: ContentAccess): Promise<boolean> {
    return access.kind === "upstream" || settleAccess(rr, access.decision, this.upstream);
  }

  /**
   * HEAD of content not on this disk: the object store's row (for a client that may have it), else
   * upstream's answer, or with peers, while upstream cannot answer, the headers of a peer's copy
   * for a client the offline policy allows.
   */
  private async head(rr: RegistryRequest, target: ContentTarget): Promise<void> {
    const located = await this.sources.locate(rr, target, false);
    // Asking the fleet takes round trips, during which a fill of this replica's may have landed.
    if (this.sources.shared && (await this.servedFromDisk(rr, target))) return;
    const access = await this.clearance.decide(rr, target, { local: false, store: located.store?.copy });
    if (!(await this.settled(rr, access))) return;
    if (located.store) {
      const { copy, mediaType } = located.store;
      await this.respond(rr, { kind: target.kind, digest: target.digest, mediaType, size: copy.size }, "SHARED", {}, () => Readable.from([]));
      return;
    }
    // Without peers to ask (or for a peer), upstream's answer is the answer.
    if (access.kind === "cached" || !access.offline) {
      await passThrough(this.upstream, rr, "MISS");
      return;
    }
    let response: UpstreamResponse | undefined;
    try {
      response = await this.upstream.request({ host: rr.host, port: rr.port, method: "HEAD", path: contentPath(target), headers: upstreamRequestHeaders(rr.req.headers) });
    } catch (err) {
      if (!isUpstreamOutage(err)) throw err;
    }
    if (response && !isUnavailableStatus(response.statusCode)) {
      relayUpstreamResponse(rr, response, "MISS");
      return;
    }
    await response?.body.dump();
    const copy = await this.sources.headFromPeers(rr, target);
    if (!copy) {
      sendFailure(rr, new UpstreamError("connect", rr.host, "unavailable, and no replica holds this content"));
      return;
    }
    await copy.body.dump();
    const publicSince = Number(headerValue(copy.headers["x-regcache-public-since"])) || undefined;
    if (await settleAccess(rr, await access.offline.judge(publicSince), this.upstream)) relayUpstreamResponse(rr, copy, "PEER");
  }

  /** For a peer: what this replica holds for the repository (linked, and of a known type there), or 404; nothing is fetched. */
  async servePeerCopy(rr: RegistryRequest, target: ContentTarget): Promise<void> {
    const hostRepository = `${rr.host}/${target.name}`;
    const entry = await this.cachedEntry(target);
    const mediaType = entry?.kind === target.kind && this.store.isLinked(target.digest, hostRepository) ? servedType(entry, hostRepository) : undefined;
    if (!entry || mediaType === undefined) {
      writeReply(rr.res, errorReply(404, target.kind === "blob" ? "BLOB_UNKNOWN" : "MANIFEST_UNKNOWN", "not held by this replica for this repository"), rr.req.method);
      return;
    }
    const publicSince = await this.access.publicSince(rr.host, target.name);
    await this.serveCached(rr, target, entry, mediaType, "HIT", publicSince ? { "x-regcache-public-since": String(publicSince) } : {});
  }

  /**
   * Keeps a copy of content a peer holds, without a client waiting (replication), or for a
   * client that is then served it (a manifest named by a recorded tag). Resolves with the entry
   * once stored; undefined when no peer has it.
   */
  keepCopy(rr: RegistryRequest, target: ContentTarget, from?: string): Promise<BlobEntry | undefined> {
    return this.keep(rr, target, this.sources.copies(rr, target, from));
  }

  /** Keeps the object store's copy of content it holds for the repository (a manifest a recorded tag names). */
  async keepShared(rr: RegistryRequest, target: ContentTarget): Promise<BlobEntry | undefined> {
    const { store } = await this.sources.locate(rr, target, false);
    if (!store?.copy.links?.includes(`${rr.host}/${target.name}`)) return undefined;
    return this.keep(rr, target, this.sources.stored(rr, target, store));
  }

  private async keep(rr: RegistryRequest, target: ContentTarget, chain: SourceChain): Promise<BlobEntry | undefined> {
    const cached = await this.cachedEntry(target);
    if (cached) return cached;
    // A copy for later is no use on a disk that cannot take it: no stream is opened for nothing.
    if (!this.store.disk.writable) return undefined;
    const outcome = await this.store.fill<Refusal>(target.digest, `${rr.host}/${target.name}`, async () => fillResult(await chain.open())).catch(() => undefined);
    chain.settle(outcome?.kind === "download" && !outcome.coalesced ? outcome.download : undefined);
    if (outcome?.kind === "refused" && outcome.response.kind === "upstream") await outcome.response.response.body.dump();
    if (outcome?.kind === "uncached") outcome.body.destroy();
    if (outcome?.kind !== "download") return undefined;
    return this.store.whenStored(outcome.download);
  }

  /** The cached entry of this digest, if its file is on disk (whatever it was cached as: cachedAnswer decides). */
  async cachedEntry(target: ContentTarget): Promise<BlobEntry | undefined> {
    const entry = this.store.lookup(target.digest);
    if (!entry) return undefined;
    return (await this.store.present(entry, target.digest)) ? entry : undefined;
  }

  /**
   * A peer's bytes are hashed as they are served, even for a file verified this run: the peer cuts a
   * response that does not match, but only this replica can drop its damaged file, and until it does
   * every replica that asks gets the same wrong bytes (the owner of a digest is asked by all of them).
   */
  async serveCached(rr: RegistryRequest, target: ContentTarget, entry: BlobEntry, mediaType: string, cache: CacheStatus = "HIT", extraHeaders: Record<string, string> = {}): Promise<void> {
    const rep = { kind: target.kind, digest: target.digest, mediaType, size: entry.size };
    await this.respond(rr, rep, cache, extraHeaders, (start, end) => this.store.readCached(entry, target.digest, start, end, rr.fromPeer === true));
  }

  /**
   * Fills the local tier and serves the content as it lands. The request that starts the fill
   * finds where the fleet holds it, decides the client's access once, and reads the chain of
   * sources as one stream; a request joining a fill in progress decides its own access as for
   * cached content, and reads the same download (a manifest once it is stored, as its type in the
   * joiner's repository).
   */
  private async fillAndServe(rr: RegistryRequest, target: ContentTarget): Promise<void> {
    let chain: SourceChain | undefined;
    let began: ChainBody | undefined;
    let outcome;
    try {
      outcome = await this.store.fill<Refusal>(target.digest, `${rr.host}/${target.name}`, async () => {
        const located = await this.sources.locate(rr, target, true);
        const access = await this.clearance.decide(rr, target, { local: false, store: located.store?.copy }).catch((err: unknown) => {
          located.lease?.release();
          throw err;
        });
        if (access.kind === "cached") rr.log.access = access.decision.result;
        if (access.kind === "cached" && !access.decision.allowed) {
          located.lease?.release();
          return { kind: "refused", response: { kind: "access", decision: access.decision } };
        }
        chain = this.sources.fill(rr, target, located, access);
        const answer = await chain.open();
        if (answer.kind === "body") began = answer;
        return fillResult(answer);
      });
    } catch (err) {
      chain?.settle(undefined);
      sendFailure(rr, err);
      return;
    }
    chain?.settle(outcome.kind === "download" && !outcome.coalesced ? outcome.download : undefined);
    switch (outcome.kind) {
      case "download": {
        if (outcome.coalesced && target.kind === "manifest") {
          // A joiner's type is its repository's, known from the bytes or a label once the fill is stored (manifests are small).
          // A fill that failed leaves the joiner to ask upstream itself, as a refused one does.
          if (!(await this.store.whenStored(outcome.download)) || !(await this.servedFromDisk(rr, target, "COALESCED"))) await passThrough(this.upstream, rr, "MISS");
          return;
        }
        const release = outcome.download.hold();
        try {
          if (outcome.coalesced) {
            if (await this.settled(rr, await this.clearance.decide(rr, target, { local: true }))) await this.serveDownload(rr, target, outcome.download, "COALESCED");
          } else {
            this.learnFromFill(rr, target, began!);
            await this.serveDownload(rr, target, outcome.download, began!.cache);
          }
        } finally {
          release();
        }
        return;
      }
      case "refused":
        await this.sendRefusal(rr, outcome.response);
        return;
      case "uncached":
        rr.log.uncached = outcome.reason;
        if (began?.source.via === "store") {
          // Streamed through, the store's bytes would reach the client unverified: upstream serves instead.
          outcome.body.destroy();
          await passThrough(this.upstream, rr, "BYPASS");
          return;
        }
        // Any other body passed the client's access decision before it was opened (a peer's copy
        // taken while upstream cannot answer was judged by the offline policy then): it streams through.
        await this.respond(rr, { kind: target.kind, digest: target.digest, mediaType: outcome.mediaType, size: outcome.size }, "BYPASS", {}, () => outcome.body, outcome.body);
        return;
      case "retry":
        await passThrough(this.upstream, rr, "MISS");
        return;
    }
  }

  /**
   * What a fill's first bytes say about the client: upstream's 200 to its own credentials (or a
   * peer's, filling with them) confirms it for the repository; whether anonymous clients may read
   * the repository too is worth knowing for later hits, online or offline. A copy taken from a
   * peer was judged by the offline policy instead, and proves nothing about upstream.
   */
  private learnFromFill(rr: RegistryRequest, target: ContentTarget, began: ChainBody): void {
    if (began.source.via === "copy") return;
    if (began.source.via !== "store") this.access.recordConfirmation(rr, target.name);
    this.access.learnPublic(rr, target.name, contentPath(target));
  }

  /** A refusal: regcache's own (access.ts's decision; a denial relays upstream's answer to this request), or upstream's, relayed. */
  private async sendRefusal(rr: RegistryRequest, refusal: Refusal): Promise<void> {
    if (refusal.kind === "access") {
      await settleAccess(rr, refusal.decision, this.upstream);
      return;
    }
    this.access.recordChallenge(rr.host, headerValue(refusal.response.headers["www-authenticate"]));
    rr.log.cache = "MISS";
    relayUpstreamResponse(rr, refusal.response, "MISS");
  }

  /** A download as it lands, as the Content-Type its source gave for the repository that started it. */
  private async serveDownload(rr: RegistryRequest, target: ContentTarget, download: Download, cache: CacheStatus): Promise<void> {
    const rep = { kind: target.kind, digest: download.digest, mediaType: download.mediaType, size: download.size };
    await this.respond(rr, rep, cache, {}, () => this.store.readDownload(download));
  }

  /**
   * Sends `rep`, whole or one range (range.ts), from what `open` gives; a Range the cache does
   * not answer itself is forwarded. `streamed`: a body streamed through uncached, which cannot
   * be ranged, and is given up when the request is forwarded.
   */
  private async respond(rr: RegistryRequest, rep: Representation, cache: CacheStatus, extraHeaders: Record<string, string>, open: (start: number, end: number) => RangeSource | Readable, streamed?: Readable): Promise<void> {
    const plan = planRange(headerValue(rr.req.headers.range), headerValue(rr.req.headers["if-range"]), contentEtag(rep.digest), streamed ? undefined : rep.size);
    if (plan.kind === "forward") {
      streamed?.destroy();
      await this.forward(rr, "range");
      return;
    }
    rr.log.cache = cache;
    writeReply(rr.res, contentReply(rep, cache, plan, open, extraHeaders), rr.req.method);
  }
}

/** A chain's answer as a fill's: a body to store, or a refusal to relay. */
function fillResult(answer: ChainBody | SourceRefusal): ChainBody | { kind: "refused"; response: Refusal } {
  return answer.kind === "body" ? answer : { kind: "refused", response: answer.refusal };
}
