import { pipeline, Readable } from "node:stream";
import type { BlobEntry } from "../cache/cache-index.js";
import type { AccessControl } from "./access-control.js";
import type { BlobStore, OpenResult } from "../cache/blob-store.js";
import type { Download } from "../cache/download.js";
import type { RangeSource } from "../cache/range-source.js";
import { sendRange } from "../cache/range-sender.js";
import type { UpstreamClient, UpstreamResponse } from "../upstream/client.js";
import { headerValue, upstreamRequestHeaders } from "../upstream/headers.js";
import { requestFollowingRedirects } from "../upstream/redirects.js";
import { UpstreamError } from "../upstream/upstream-error.js";
import { acceptAllows, normalizeAccept } from "./accept.js";
import { cachedContentStep } from "./link-policy.js";
import type { Digest } from "./digest.js";
import { sendRegistryError } from "./errors.js";
import { passThrough, relayUpstreamResponse, sendUpstreamFailure } from "./pass-through.js";
import { contentRange, parseRange } from "./range.js";
import { cacheStatusHeaders, type CacheStatus, type RegistryRequest } from "./request-context.js";

export const BLOB_MEDIA_TYPE = "application/octet-stream";
/** The distribution spec lets registries refuse manifests over 4 MiB; nothing larger is a manifest worth holding. */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/** Conditional and range headers describe the client's view; the cache fetches whole, unconditional bodies. */
const NOT_FORWARDED_ON_FILL = ["range", "if-range", "if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "content-length"];

export interface ContentTarget {
  kind: "blob" | "manifest";
  name: string;
  digest: Digest;
}

export function contentPath(target: ContentTarget): string {
  return `/v2/${target.name}/${target.kind === "blob" ? "blobs" : "manifests"}/${target.digest.value}`;
}

interface Representation {
  digest: Digest;
  mediaType: string;
  size: number | undefined;
}

/**
 * GET and HEAD of blobs and manifests by digest: immutable, so served from the
 * cache when present, else fetched once (coalesced) and streamed while stored.
 */
export class ContentHandler {
  constructor(
    private readonly store: BlobStore,
    private readonly upstream: UpstreamClient,
    private readonly access: AccessControl,
  ) {}

  async handle(rr: RegistryRequest, target: ContentTarget): Promise<void> {
    const entry = await this.usableEntry(rr, target);
    if (entry) {
      if (await this.mayServe(rr, target)) this.serveCached(rr, target, entry);
      return;
    }
    if (rr.req.method !== "GET") {
      await passThrough(this.upstream, rr, "MISS");
      return;
    }
    await this.fillAndServe(rr, target);
  }

  /**
   * Content cached (or downloading) for one client reaches this one only in a repository
   * upstream confirmed it in, and only if upstream would serve this client there
   * (link-policy.ts). When it refuses, the refusal has been sent.
   */
  private async mayServe(rr: RegistryRequest, target: ContentTarget): Promise<boolean> {
    const hostRepository = `${rr.host}/${target.name}`;
    const step = cachedContentStep(this.store.isLinked(target.digest, hostRepository));
    const decision =
      step === "authorize"
        ? await this.access.authorize(rr, target.name, contentPath(target))
        : await this.access.confirmInRepository(rr, target.name, contentPath(target), target.kind === "blob" ? "BLOB_UNKNOWN" : "MANIFEST_UNKNOWN");
    rr.log.access = decision.result;
    if (!decision.allowed) {
      decision.refuse();
      return false;
    }
    if (step === "confirm") this.store.link(target.digest, hostRepository);
    return true;
  }

  /** The cached entry for this request, if its file is on disk and (for a manifest) the client's Accept allows its media type. */
  async usableEntry(rr: RegistryRequest, target: ContentTarget): Promise<BlobEntry | undefined> {
    const entry = this.store.lookup(target.digest);
    if (!entry) return undefined;
    if (target.kind === "manifest" && !acceptAllows(normalizeAccept(rr.req.headers.accept), entry.mediaType)) return undefined;
    return (await this.store.present(entry, target.digest)) ? entry : undefined;
  }

  serveCached(rr: RegistryRequest, target: ContentTarget, entry: BlobEntry, cache: CacheStatus = "HIT", extraHeaders: Record<string, string> = {}): void {
    rr.log.cache = cache;
    const rep = { digest: target.digest, mediaType: entry.mediaType, size: entry.size };
    this.respond(rr, rep, cache, extraHeaders, (start, end) => this.store.readCached(entry, target.digest, start, end));
  }

  private async fillAndServe(rr: RegistryRequest, target: ContentTarget): Promise<void> {
    let outcome;
    try {
      outcome = await this.store.fill<UpstreamResponse>(target.digest, `${rr.host}/${target.name}`, () => this.openUpstream(rr, target));
    } catch (err) {
      sendUpstreamFailure(rr, err);
      return;
    }
    switch (outcome.kind) {
      case "download": {
        const release = outcome.download.hold();
        try {
          if (!outcome.coalesced) {
            this.access.recordConfirmation(rr, target.name);
            this.access.learnPublic(rr, target.name, contentPath(target));
          } else if (!(await this.mayServe(rr, target))) return;
          this.serveDownload(rr, outcome.download, outcome.coalesced ? "COALESCED" : "MISS");
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
        rr.log.cache = "BYPASS";
        rr.log.uncached = outcome.reason;
        this.respond(rr, { digest: target.digest, mediaType: outcome.mediaType, size: outcome.size }, "BYPASS", {}, () => outcome.body, true);
        return;
      case "retry":
        await passThrough(this.upstream, rr, "MISS");
        return;
    }
  }

  private async openUpstream(rr: RegistryRequest, target: ContentTarget): Promise<OpenResult<UpstreamResponse>> {
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
    const length = headerValue(response.headers["content-length"]);
    const size = length !== undefined && /^\d+$/.test(length) ? Number(length) : undefined;
    const mediaType = target.kind === "blob" ? BLOB_MEDIA_TYPE : (headerValue(response.headers["content-type"]) ?? BLOB_MEDIA_TYPE);
    if (target.kind === "blob") return { kind: "body", body: response.body, size, mediaType, host };
    if (size !== undefined && size > MAX_MANIFEST_BYTES) {
      response.body.destroy();
      throw new UpstreamError("protocol", host, `manifest of ${size} bytes is over the ${MAX_MANIFEST_BYTES}-byte limit`);
    }
    return { kind: "body", body: response.body, size, mediaType, host, maxSize: MAX_MANIFEST_BYTES };
  }

  private serveDownload(rr: RegistryRequest, download: Download, cache: CacheStatus): void {
    rr.log.cache = cache;
    const rep = { digest: download.digest, mediaType: download.mediaType, size: download.size };
    this.respond(rr, rep, cache, {}, () => this.store.readDownload(download));
  }

  /**
   * Writes headers and the (ranged) body from what `open` gives: the cache's source, or
   * an upstream body streamed through. Without a known size, ranges cannot be answered
   * and the whole body streams.
   */
  private respond(
    rr: RegistryRequest,
    rep: Representation,
    cache: CacheStatus,
    extraHeaders: Record<string, string>,
    open: (start: number, end: number) => RangeSource | Readable,
    wholeOnly = false,
  ): void {
    const headers: Record<string, string | number> = {
      "content-type": rep.mediaType,
      "docker-content-digest": rep.digest.value,
      etag: `"${rep.digest.value}"`,
      "docker-distribution-api-version": "registry/2.0",
      ...cacheStatusHeaders(cache),
      ...extraHeaders,
    };
    const size = rep.size;
    if (size !== undefined) headers["accept-ranges"] = "bytes";
    const range = size === undefined || wholeOnly ? { kind: "none" as const } : parseRange(headerValue(rr.req.headers.range), size);
    if (range.kind === "unsatisfiable") {
      sendRegistryError(rr.res, 416, "RANGE_INVALID", `requested range not satisfiable for ${size} bytes`, { "content-range": `bytes */${size}` });
      return;
    }
    let start = 0;
    let end = (size ?? Number.MAX_SAFE_INTEGER) - 1;
    let status = 200;
    if (range.kind === "range") {
      ({ start, end } = range.range);
      status = 206;
      headers["content-range"] = contentRange(range.range, size!);
    }
    if (size !== undefined) headers["content-length"] = end - start + 1;
    rr.res.writeHead(status, headers);
    if (rr.req.method === "HEAD" || end < start) {
      rr.res.end();
      return;
    }
    const body = open(start, end);
    if (body instanceof Readable) pipeline(body, rr.res, () => undefined);
    else sendRange(body, start, end, rr.res);
  }
}
