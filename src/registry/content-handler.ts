import { Readable } from "node:stream";
import type { BlobEntry } from "../cache/cache-index.js";
import { settleAccess, type AccessControl } from "./access-control.js";
import type { BlobStore } from "../cache/blob-store.js";
import { DigestMismatchError, SizeMismatchError, type Download } from "../cache/download.js";
import type { HeldLease } from "../fleet/held-lease.js";
import type { SharedCopy } from "../fleet/shared-tier.js";
import type { RangeSource } from "../cache/range-source.js";
import type { UpstreamClient, UpstreamResponse } from "../upstream/client.js";
import { headerValue, upstreamRequestHeaders } from "../upstream/headers.js";
import { isUnavailableStatus, isUpstreamOutage, UpstreamError } from "../upstream/upstream-error.js";
import { acceptAllows, normalizeAccept } from "./accept.js";
import type { ContentSources, SourcedResult } from "./content-sources.js";
import { contentPath, type ContentTarget } from "./content-target.js";
import { cachedContentStep } from "./link-policy.js";
import { sendFailure } from "./errors.js";
import { passThrough, relayUpstreamResponse } from "./pass-through.js";
import { contentReply, type Representation } from "./content-reply.js";
import { errorReply, writeReply } from "./reply.js";
import type { CacheStatus, RegistryRequest } from "./request-context.js";

/** What a peer's X-Cache says when the bytes came from the cluster's cache rather than upstream. */
const PEER_CACHED = new Set(["HIT", "STALE", "COALESCED", "PEER"]);

/**
 * GET and HEAD of blobs and manifests by digest: immutable, so served from the
 * cache when present, else fetched once (coalesced) and streamed while stored.
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
    const copy = await this.sharedCopy(rr, target);
    // Asking the fleet takes round trips, during which a fill of this replica's may have landed.
    if (this.sources.shared && (await this.servedFromDisk(rr, target))) return;
    if (copy && !(await this.mayServe(rr, target, copy.links))) return;
    if (rr.req.method === "GET") await this.fillAndServe(rr, target, copy);
    else if (copy) {
      rr.log.cache = "SHARED";
      this.respond(rr, { digest: target.digest, mediaType: copy.mediaType, size: copy.size }, "SHARED", {}, () => Readable.from([]));
    }
    else await this.headMiss(rr, target);
  }

  /** Serves what this replica's disk holds (or sends the refusal); false when it holds nothing usable. */
  private async servedFromDisk(rr: RegistryRequest, target: ContentTarget): Promise<boolean> {
    const entry = await this.usableEntry(rr, target);
    if (!entry) return false;
    if (await this.mayServe(rr, target)) this.serveCached(rr, target, entry);
    return true;
  }

  /** What the fleet's object store holds for this request, if its media type suits the client. */
  private async sharedCopy(rr: RegistryRequest, target: ContentTarget): Promise<SharedCopy | undefined> {
    const copy = await this.sources.shared?.find(target.digest);
    if (!copy || (target.kind === "manifest" && !acceptAllows(normalizeAccept(rr.req.headers.accept), copy.mediaType))) return undefined;
    return copy;
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
    return settleAccess(rr, await this.access.authorizeOffline(rr, target.name));
  }

  /**
   * Content cached (or downloading) for one client reaches this one only in a repository
   * upstream confirmed it in, and only if upstream would serve this client there
   * (link-policy.ts). When it refuses, the refusal has been sent.
   */
  private async mayServe(rr: RegistryRequest, target: ContentTarget, sharedLinks?: string[]): Promise<boolean> {
    const hostRepository = `${rr.host}/${target.name}`;
    const step = cachedContentStep(this.store.isLinked(target.digest, hostRepository) || (sharedLinks?.includes(hostRepository) ?? false));
    const decision =
      step === "authorize"
        ? await this.access.authorize(rr, target.name, contentPath(target))
        : await this.access.confirmInRepository(rr, target.name, contentPath(target), target.kind === "blob" ? "BLOB_UNKNOWN" : "MANIFEST_UNKNOWN");
    if (!settleAccess(rr, decision)) return false;
    if (step === "confirm") {
      this.store.link(target.digest, hostRepository);
      this.sources.shared?.link(target.digest, hostRepository);
    }
    return true;
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
    return this.keep(rr, target, () => this.sources.openCopy(rr, target, from));
  }

  /** Keeps the object store's copy of content it holds for the repository (a manifest a recorded tag names). */
  async keepShared(rr: RegistryRequest, target: ContentTarget): Promise<BlobEntry | undefined> {
    const copy = await this.sharedCopy(rr, target);
    if (!copy?.links?.includes(`${rr.host}/${target.name}`)) return undefined;
    return this.keep(rr, target, () => this.sources.openShared(rr, target, copy));
  }

  private async keep(rr: RegistryRequest, target: ContentTarget, open: () => Promise<SourcedResult>): Promise<BlobEntry | undefined> {
    const cached = await this.usableEntry(rr, target);
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
   * Fills the local tier from the first source that has the content and serves it as it lands.
   * `copy`: the object store holds it and the client may read it (authorized by the caller); if
   * the store fails to hand it over, the other sources are asked as if it had not been there.
   */
  private async fillAndServe(rr: RegistryRequest, target: ContentTarget, copy?: SharedCopy): Promise<void> {
    let opened: SourcedResult | undefined;
    let outcome;
    const open = async (): Promise<SourcedResult> => {
      if (copy) {
        try {
          return await this.sources.openShared(rr, target, copy);
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
        const release = outcome.download.hold();
        try {
          if (outcome.coalesced) {
            if (copy || (await this.mayServe(rr, target))) this.serveDownload(rr, outcome.download, "COALESCED");
            return;
          }
          if (opened?.via === "shared") {
            // Upstream said yes to this client (mayServe, or the lease's check): what it says of anonymous clients is worth knowing.
            this.access.learnPublic(rr, target.name, contentPath(target));
            this.afterSharedFill(outcome.download);
            this.serveDownload(rr, outcome.download, "SHARED");
            return;
          }
          if (opened?.via === "copy") {
            // A peer's copy, taken because upstream cannot answer: the offline policy decides.
            if (opened.publicSince) await this.access.adoptPublicVerdict(rr.host, target.name, opened.publicSince);
            if (await this.allowedOffline(rr, target)) this.serveDownload(rr, outcome.download, "PEER");
            return;
          }
          this.access.recordConfirmation(rr, target.name);
          this.access.learnPublic(rr, target.name, contentPath(target));
          if (opened?.via === "upstream") this.afterUpstreamFill(rr, target, outcome.download, opened.lease);
          this.serveDownload(rr, outcome.download, (opened?.via === "owner" || opened?.via === "holder") && PEER_CACHED.has(opened.peerCache ?? "") ? "PEER" : "MISS");
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
        rr.log.cache = "BYPASS";
        rr.log.uncached = outcome.reason;
        this.respond(rr, { digest: target.digest, mediaType: outcome.mediaType, size: outcome.size }, "BYPASS", {}, () => outcome.body, true);
        return;
      case "retry":
        await passThrough(this.upstream, rr, "MISS");
        return;
    }
  }

  /** A fill from upstream is the cluster's or the fleet's first copy: a peer or the object store keeps the second. */
  private afterUpstreamFill(rr: RegistryRequest, target: ContentTarget, download: Download, lease: HeldLease | undefined): void {
    download.done.then(
      () => {
        this.sources.replicate(rr, target);
        const entry = this.store.lookup(target.digest);
        if (!this.sources.shared || !entry) return lease?.release();
        this.sources.shared.stored({ digest: target.digest, file: this.store.fileOf(target.digest), size: entry.size, mediaType: entry.mediaType, links: [...entry.links] }, lease);
      },
      () => lease?.release(),
    );
  }

  /** An object that does not match its digest is no copy at all: it leaves the store, and the next request goes upstream. */
  private afterSharedFill(download: Download): void {
    download.done.catch((err: unknown) => {
      if (err instanceof DigestMismatchError || err instanceof SizeMismatchError) this.sources.shared?.discard(download.digest);
    });
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
