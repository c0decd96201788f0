import { Readable } from "node:stream";
import type { BlobEntry } from "../cache/cache-index.js";
import { settleAccess, type AccessControl } from "./access-control.js";
import type { BlobStore } from "../cache/blob-store.js";
import type { Download } from "../cache/download.js";
import type { RangeSource } from "../cache/range-source.js";
import type { Refusal, SourceRefusal } from "../sources/content-source.js";
import type { ChainBody, SourceChain } from "../sources/source-chain.js";
import type { UpstreamClient, UpstreamResponse } from "../upstream/client.js";
import { headerValue, upstreamRequestHeaders } from "../upstream/headers.js";
import { isUnavailableStatus, isUpstreamOutage, UpstreamError } from "../upstream/upstream-error.js";
import { acceptAllows, normalizeAccept } from "./accept.js";
import type { ContentAccess, ContentClearance } from "./content-access.js";
import type { ContentSources } from "./content-sources.js";
import { contentPath, type ContentTarget } from "./content-target.js";
import { sendFailure } from "./errors.js";
import { passThrough, relayUpstreamResponse } from "./pass-through.js";
import { contentReply, type Representation } from "./content-reply.js";
import { errorReply, writeReply } from "./reply.js";
import type { CacheStatus, RegistryRequest } from "./request-context.js";

/**
 * GET and HEAD of blobs and manifests by digest: immutable, so served from the cache when present,
 * else fetched once (coalesced) and streamed while stored. Each request's access is decided once
 * (content-access.ts), before anything is opened; a fill then reads one stream from the chain of
 * sources (content-sources.ts).
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

  /** Serves what this replica's disk holds (or sends the refusal); false when it holds nothing usable. */
  private async servedFromDisk(rr: RegistryRequest, target: ContentTarget): Promise<boolean> {
    const entry = await this.usableEntry(rr, target);
    if (!entry) return false;
    if (this.settled(rr, await this.clearance.decide(rr, target, { local: true }))) this.serveCached(rr, target, entry);
    return true;
  }

  /** Logs how access was settled and sends a refusal; says whether to serve. */
  private settled(rr: RegistryRequest, access: ContentAccess): boolean {
    return access.kind === "upstream" || settleAccess(rr, access.decision);
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
    const access = await this.clearance.decide(rr, target, { local: false, store: located.store });
    if (!this.settled(rr, access)) return;
    if (located.store) {
      rr.log.cache = "SHARED";
      this.respond(rr, { digest: target.digest, mediaType: located.store.mediaType, size: located.store.size }, "SHARED", {}, () => Readable.from([]));
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
    if (settleAccess(rr, await access.offline.judge(publicSince))) relayUpstreamResponse(rr, copy, "PEER");
  }

  /** For a peer: what this replica holds for the repository (linked), or 404; nothing is fetched. */
  async servePeerCopy(rr: RegistryRequest, target: ContentTarget): Promise<void> {
    const entry = await this.usableEntry(rr, target);
    if (!entry || !this.store.isLinked(target.digest, `${rr.host}/${target.name}`)) {
      writeReply(rr.res, errorReply(404, target.kind === "blob" ? "BLOB_UNKNOWN" : "MANIFEST_UNKNOWN", "not held by this replica for this repository"), rr.req.method);
      return;
    }
    const publicSince = await this.access.publicSince(rr.host, target.name);
    this.serveCached(rr, target, entry, "HIT", publicSince ? { "x-regcache-public-since": String(publicSince) } : {});
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
    if (!store?.links?.includes(`${rr.host}/${target.name}`)) return undefined;
    return this.keep(rr, target, this.sources.stored(rr, target, store));
  }

  private async keep(rr: RegistryRequest, target: ContentTarget, chain: SourceChain): Promise<BlobEntry | undefined> {
    const cached = await this.usableEntry(rr, target);
    if (cached) return cached;
    // A copy for later is no use on a disk that cannot take it: no stream is opened for nothing.
    if (!this.store.disk.writable) return undefined;
    const outcome = await this.store.fill<Refusal>(target.digest, `${rr.host}/${target.name}`, async () => fillResult(await chain.open())).catch(() => undefined);
    chain.settle(outcome?.kind === "download" && !outcome.coalesced ? outcome.download : undefined);
    if (outcome?.kind === "refused" && outcome.response.kind === "upstream") await outcome.response.response.body.dump();
    if (outcome?.kind === "uncached") outcome.body.destroy();
    if (outcome?.kind !== "download") return undefined;
    await outcome.download.done.catch(() => undefined);
    return this.store.lookup(target.digest);
  }

  /** The cached entry for this request, if its file is on disk and (for a manifest) the client's Accept allows its media type. */
  async usableEntry(rr: RegistryRequest, target: ContentTarget): Promise<BlobEntry | undefined> {
    const entry = this.store.lookup(target.digest);
    if (!entry) return undefined;
    if (target.kind === "manifest" && !acceptAllows(normalizeAccept(rr.req.headers.accept), entry.mediaType)) return undefined;
    return (await this.store.present(entry, target.digest)) ? entry : undefined;
  }

  /**
   * A peer's bytes are hashed as they are served, even for a file verified this run: the peer cuts a
   * response that does not match, but only this replica can drop its damaged file, and until it does
   * every replica that asks gets the same wrong bytes (the owner of a digest is asked by all of them).
   */
  serveCached(rr: RegistryRequest, target: ContentTarget, entry: BlobEntry, cache: CacheStatus = "HIT", extraHeaders: Record<string, string> = {}): void {
    rr.log.cache = cache;
    const rep = { digest: target.digest, mediaType: entry.mediaType, size: entry.size };
    this.respond(rr, rep, cache, extraHeaders, (start, end) => this.store.readCached(entry, target.digest, start, end, rr.fromPeer === true));
  }

  /**
   * Fills the local tier and serves the content as it lands. The request that starts the fill
   * finds where the fleet holds it, decides the client's access once, and reads the chain of
   * sources as one stream; a request joining a fill in progress decides its own access as for
   * cached content, and reads the same download.
   */
  private async fillAndServe(rr: RegistryRequest, target: ContentTarget): Promise<void> {
    let chain: SourceChain | undefined;
    let began: ChainBody | undefined;
    let outcome;
    try {
      outcome = await this.store.fill<Refusal>(target.digest, `${rr.host}/${target.name}`, async () => {
        const located = await this.sources.locate(rr, target, true);
        const access = await this.clearance.decide(rr, target, { local: false, store: located.store }).catch((err: unknown) => {
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
        const release = outcome.download.hold();
        try {
          if (outcome.coalesced) {
            if (this.settled(rr, await this.clearance.decide(rr, target, { local: true }))) this.serveDownload(rr, outcome.download, "COALESCED");
          } else {
            this.learnFromFill(rr, target, began!);
            this.serveDownload(rr, outcome.download, began!.cache);
          }
        } finally {
          release();
        }
        return;
      }
      case "refused":
        this.sendRefusal(rr, outcome.response);
        return;
      case "uncached":
        if (began?.source.via === "store") {
          // Streamed through, the store's bytes would reach the client unverified: upstream serves instead.
          outcome.body.destroy();
          rr.log.uncached = outcome.reason;
          await passThrough(this.upstream, rr, "BYPASS");
          return;
        }
        // Any other body passed the client's access decision before it was opened (a peer's copy
        // taken while upstream cannot answer was judged by the offline policy then): it streams through.
        rr.log.cache = "BYPASS";
        rr.log.uncached = outcome.reason;
        this.respond(rr, { digest: target.digest, mediaType: outcome.mediaType, size: outcome.size }, "BYPASS", {}, () => outcome.body, true);
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

  private sendRefusal(rr: RegistryRequest, refusal: Refusal): void {
    if (refusal.kind === "access") {
      settleAccess(rr, refusal.decision);
      return;
    }
    this.access.recordChallenge(rr.host, headerValue(refusal.response.headers["www-authenticate"]));
    rr.log.cache = "MISS";
    relayUpstreamResponse(rr, refusal.response, "MISS");
  }

  private serveDownload(rr: RegistryRequest, download: Download, cache: CacheStatus): void {
    rr.log.cache = cache;
    const rep = { digest: download.digest, mediaType: download.mediaType, size: download.size };
    this.respond(rr, rep, cache, {}, () => this.store.readDownload(download));
  }

  /** Sends `rep` (whole or ranged, see contentReply) from what `open` gives: the cache's source, or an upstream body streamed through. */
  private respond(rr: RegistryRequest, rep: Representation, cache: CacheStatus, extraHeaders: Record<string, string>, open: (start: number, end: number) => RangeSource | Readable, wholeOnly = false): void {
    writeReply(rr.res, contentReply(rep, cache, headerValue(rr.req.headers.range), open, { extraHeaders, wholeOnly }), rr.req.method);
  }
}

/** A chain's answer as a fill's: a body to store, or a refusal to relay. */
function fillResult(answer: ChainBody | SourceRefusal): ChainBody | { kind: "refused"; response: Refusal } {
  return answer.kind === "body" ? answer : { kind: "refused", response: answer.refusal };
}
