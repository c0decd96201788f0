import { Readable } from "node:stream";
import type { BlobEntry } from "../cache/cache-index.js";
import { servedType } from "../cache/manifest-types.js";
import { settleAccess, type AccessControl } from "./access-control.js";
import type { BlobStore } from "../cache/blob-store.js";
import { DigestMismatchError, SizeMismatchError, type Download } from "../cache/download.js";
import type { HeldLease } from "../fleet/held-lease.js";
import type { SharedCopy } from "../fleet/shared-tier.js";
import type { RangeSource } from "../cache/range-source.js";
import type { UpstreamClient, UpstreamResponse } from "../upstream/client.js";
import { headerValue, upstreamRequestHeaders } from "../upstream/headers.js";
import { isUnavailableStatus, isUpstreamOutage, UpstreamError } from "../upstream/upstream-error.js";
import { normalizeAccept } from "./accept.js";
import { cachedAnswer, type CachedAnswer, type NotFromCache } from "./cached-answer.js";
import type { ContentSources, SourcedResult } from "./content-sources.js";
import { contentPath, type ContentTarget } from "./content-target.js";
import { cachedContentStep } from "./link-policy.js";
import { sendFailure } from "./errors.js";
import { passThrough, relayUpstreamResponse } from "./pass-through.js";
import { contentEtag, contentReply, type Representation } from "./content-reply.js";
import { planRange } from "./range.js";
import { errorReply, writeReply } from "./reply.js";
import type { CacheStatus, RegistryRequest } from "./request-context.js";

/** What a peer's X-Cache says when the bytes came from the cluster's cache rather than upstream. */
const PEER_CACHED = new Set(["HIT", "STALE", "COALESCED", "PEER"]);

/** A shared copy this request may be answered from, and as what type. */
interface UsableCopy {
  copy: SharedCopy;
  mediaType: string;
}

/**
 * GET and HEAD of blobs and manifests by digest: immutable, so served from the
 * cache when present, else fetched once (coalesced) and streamed while stored.
 * What the cache cannot answer exactly as the registry would is forwarded (cached-answer.ts).
 */
export class ContentHandler {
  constructor(
    private readonly store: BlobStore,
    private readonly upstream: UpstreamClient,
    private readonly access: AccessControl,
    private readonly sources: ContentSources,
  ) {}

  async handle(rr: RegistryRequest, target: ContentTarget): Promise<void> {
    if (await this.servedFromDisk(rr, target)) return;
    // The fleet's object store is the next tier: content there is cached content, for the same rules.
    const usable = await this.sharedCopy(rr, target);
    // Asking the fleet takes round trips, during which a fill of this replica's may have landed.
    if (this.sources.shared && (await this.servedFromDisk(rr, target))) return;
    if (usable && !(await this.mayServe(rr, target, false, usable.copy.links))) return;
    if (rr.req.method === "GET") await this.fillAndServe(rr, target, usable);
    else if (usable) await this.respond(rr, { kind: target.kind, digest: target.digest, mediaType: usable.mediaType, size: usable.copy.size }, "SHARED", {}, () => Readable.from([]));
    else await this.headMiss(rr, target);
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
    if (answer.kind === "forward" && answer.reason !== "media-type") return this.forward(rr, answer.reason);
    // A manifest whose type here is not known is confirmed with upstream, whose answer says it.
    if (!(await this.mayServe(rr, target, answer.kind === "forward"))) return true;
    answer = cachedAnswer(target.kind, entry, hostRepository, acceptSet);
    if (answer.kind === "forward") return this.forward(rr, answer.reason);
    await this.serveCached(rr, target, entry, answer.mediaType, cache);
    return true;
  }

  /** Relays the upstream's own answer to this request, uncached: the cache cannot give the registry's. */
  private async forward(rr: RegistryRequest, reason: NotFromCache | "range"): Promise<true> {
    rr.log.forwarded = reason;
    await passThrough(this.upstream, rr, "BYPASS");
    return true;
  }

  /** What the fleet's object store holds for this request, if it answers it as a cached entry would (cachedAnswer). */
  private async sharedCopy(rr: RegistryRequest, target: ContentTarget): Promise<UsableCopy | undefined> {
    const copy = await this.sources.shared?.find(target.digest);
    const answer = copy && cachedAnswer(target.kind, copy, `${rr.host}/${target.name}`, normalizeAccept(rr.req.headers.accept));
    return answer?.kind === "serve" ? { copy: copy!, mediaType: answer.mediaType } : undefined;
  }

  /**
   * HEAD of content not cached here: upstream's answer, or with peers, while upstream cannot
   * answer, the headers of a peer's copy for a client the offline policy allows.
   */
  private async headMiss(rr: RegistryRequest, target: ContentTarget): Promise<void> {
    if (!this.sources.clustered || rr.fromPeer) {
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
    if (await this.allowedOffline(rr, target)) relayUpstreamResponse(rr, copy, "PEER");
  }

  private async allowedOffline(rr: RegistryRequest, target: ContentTarget): Promise<boolean> {
    return settleAccess(rr, await this.access.authorizeOffline(rr, target.name), this.upstream);
  }

  /**
   * Content cached (or downloading) for one client reaches this one only in a repository
   * upstream confirmed it in, and only if upstream would serve this client there
   * (link-policy.ts); `confirm` asks upstream even where it is linked (to learn its type there).
   * When it refuses, the refusal has been sent.
   */
  private async mayServe(rr: RegistryRequest, target: ContentTarget, confirm = false, sharedLinks?: string[]): Promise<boolean> {
    const hostRepository = `${rr.host}/${target.name}`;
    const linked = this.store.isLinked(target.digest, hostRepository) || (sharedLinks?.includes(hostRepository) ?? false);
    const step = confirm ? "confirm" : cachedContentStep(linked);
    const decision = step === "authorize" ? await this.access.authorize(rr, target.name, contentPath(target)) : await this.access.confirmInRepository(rr, target.name, contentPath(target));
    if (!(await settleAccess(rr, decision, this.upstream))) return false;
    if (step === "confirm") {
      const contentType = decision.allowed ? decision.contentType : undefined;
      this.store.link(target.digest, hostRepository, contentType);
      this.sources.shared?.link(target.digest, hostRepository, contentType);
    }
    return true;
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
    return this.keep(rr, target, () => this.sources.openCopy(rr, target, from));
  }

  /** Keeps the object store's copy of content it holds for the repository (a manifest a recorded tag names). */
  async keepShared(rr: RegistryRequest, target: ContentTarget): Promise<BlobEntry | undefined> {
    const usable = await this.sharedCopy(rr, target);
    if (!usable?.copy.links?.includes(`${rr.host}/${target.name}`)) return undefined;
    return this.keep(rr, target, () => this.sources.openShared(rr, target, usable.copy, usable.mediaType));
  }

  private async keep(rr: RegistryRequest, target: ContentTarget, open: () => Promise<SourcedResult>): Promise<BlobEntry | undefined> {
    const cached = await this.cachedEntry(target);
    if (cached) return cached;
    // A copy for later is no use on a disk that cannot take it: no stream is opened for nothing.
    if (!this.store.disk.writable) return undefined;
    let opened: SourcedResult | undefined;
    const outcome = await this.store.fill<UpstreamResponse>(target.digest, `${rr.host}/${target.name}`, async () => (opened = await open())).catch(() => undefined);
    if (outcome?.kind === "refused") await outcome.response.body.dump();
    if (outcome?.kind === "uncached") outcome.body.destroy();
    if (outcome?.kind !== "download") return undefined;
    if (opened?.publicSince) await this.access.adoptPublicVerdict(rr.host, target.name, opened.publicSince);
    if (opened?.via === "shared") this.afterSharedFill(outcome.download);
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
   * Fills the local tier from the first source that has the content and serves it as it lands.
   * `copy`: the object store holds it and the client may read it (authorized by the caller); if
   * the store fails to hand it over, the other sources are asked as if it had not been there.
   */
  private async fillAndServe(rr: RegistryRequest, target: ContentTarget, usable?: UsableCopy): Promise<void> {
    let opened: SourcedResult | undefined;
    let outcome;
    const open = async (): Promise<SourcedResult> => {
      if (usable) {
        try {
          return await this.sources.openShared(rr, target, usable.copy, usable.mediaType);
        } catch (err) {
          rr.log.sharedError = (err as Error).message;
        }
      }
      return this.sources.open(rr, target);
    };
    try {
      outcome = await this.store.fill<UpstreamResponse>(target.digest, `${rr.host}/${target.name}`, async () => (opened = await open()));
    } catch (err) {
      opened?.lease?.release();
      sendFailure(rr, err);
      return;
    }
    if (outcome.kind !== "download" || outcome.coalesced) opened?.lease?.release();
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
            if (usable || (await this.mayServe(rr, target))) await this.serveDownload(rr, target, outcome.download, "COALESCED");
            return;
          }
          if (opened?.via === "shared") {
            // Upstream said yes to this client (mayServe, or the lease's check): what it says of anonymous clients is worth knowing.
            this.access.learnPublic(rr, target.name, contentPath(target));
            this.afterSharedFill(outcome.download);
            await this.serveDownload(rr, target, outcome.download, "SHARED");
            return;
          }
          if (opened?.via === "copy") {
            // A peer's copy, taken because upstream cannot answer: the offline policy decides.
            if (opened.publicSince) await this.access.adoptPublicVerdict(rr.host, target.name, opened.publicSince);
            if (await this.allowedOffline(rr, target)) await this.serveDownload(rr, target, outcome.download, "PEER");
            return;
          }
          this.access.recordConfirmation(rr, target.name);
          this.access.learnPublic(rr, target.name, contentPath(target));
          if (opened?.via === "upstream") this.afterUpstreamFill(rr, target, outcome.download, opened.lease);
          await this.serveDownload(rr, target, outcome.download, (opened?.via === "owner" || opened?.via === "holder") && PEER_CACHED.has(opened.peerCache ?? "") ? "PEER" : "MISS");
        } finally {
          release();
        }
        return;
      }
      case "refused":
        this.access.recordChallenge(rr.host, headerValue(outcome.response.headers["www-authenticate"]));
        rr.log.cache = "MISS";
        relayUpstreamResponse(rr, outcome.response, "MISS");
        return;
      case "uncached":
        if (opened?.via === "shared") {
          // Streamed through, the store's bytes would reach the client unverified: upstream serves instead.
          outcome.body.destroy();
          await this.fillAndServe(rr, target);
          return;
        }
        // A peer's copy, taken because upstream cannot answer, is the offline policy's to allow, cached or not.
        if (opened?.via === "copy") {
          if (opened.publicSince) await this.access.adoptPublicVerdict(rr.host, target.name, opened.publicSince);
          if (!(await this.allowedOffline(rr, target))) {
            outcome.body.destroy();
            return;
          }
        }
        rr.log.uncached = outcome.reason;
        await this.respond(rr, { kind: target.kind, digest: target.digest, mediaType: outcome.mediaType, size: outcome.size }, "BYPASS", {}, () => outcome.body, outcome.body);
        return;
      case "retry":
        await passThrough(this.upstream, rr, "MISS");
        return;
    }
  }

  /** A fill from upstream is the cluster's or the fleet's first copy: a peer or the object store keeps the second. */
  private afterUpstreamFill(rr: RegistryRequest, target: ContentTarget, download: Download, lease: HeldLease | undefined): void {
    void this.store.whenStored(download).then((entry) => {
      if (!entry) return lease?.release();
      this.sources.replicate(rr, target);
      if (!this.sources.shared) return lease?.release();
      const { size, kind, mediaType, linkTypes, links } = entry;
      this.sources.shared.stored({ digest: target.digest, file: this.store.fileOf(target.digest), size, kind, mediaType, linkTypes, links: [...links] }, lease);
    });
  }

  /** An object that does not match its digest is no copy at all: it leaves the store, and the next request goes upstream. */
  private afterSharedFill(download: Download): void {
    download.done.catch((err: unknown) => {
      if (err instanceof DigestMismatchError || err instanceof SizeMismatchError) this.sources.shared?.discard(download.digest);
    });
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
