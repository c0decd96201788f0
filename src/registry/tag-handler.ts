import type { BlobStore } from "../cache/blob-store.js";
import { tagKey, type BlobEntry, type CacheIndex, type TagEntry } from "../cache/cache-index.js";
import type { UpstreamClient, UpstreamResponse } from "../upstream/client.js";
import { headerValue, upstreamRequestHeaders } from "../upstream/headers.js";
import { normalizeAccept } from "./accept.js";
import type { ContentHandler } from "./content-handler.js";
import type { ContentTarget } from "./content-target.js";
import { parseDigest } from "../oci/digest.js";
import { sendRegistryError } from "./errors.js";
import { passThrough, relayUpstreamResponse } from "./pass-through.js";
import { requestFollowingRedirects } from "../upstream/redirects.js";
import type { RegistryRequest } from "./request-context.js";
import type { AccessControl } from "./access-control.js";
import type { Cluster } from "../cluster/cluster.js";
import { isUnavailableStatus, isUpstreamOutage, UpstreamError } from "../upstream/upstream-error.js";

interface RecordedManifest {
  manifest: ContentTarget;
  entry: BlobEntry;
}

export interface TagTarget {
  name: string;
  tag: string;
}

/** RFC 9111 section 5.5 (obsoleted but still what clients and people recognise). */
const STALE_WARNING = '110 - "Response is stale"';

/**
 * GET/HEAD of a manifest by tag. Tags move, so upstream is asked (with a HEAD,
 * which Docker Hub does not count against its rate limit) which digest the tag
 * names now; the body then comes from the digest cache. When upstream cannot
 * answer (down, 5xx, 429, timeout), the last answer recorded for this tag and
 * Accept set is served, marked stale.
 */
export class TagHandler {
  constructor(
    private readonly upstream: UpstreamClient,
    private readonly store: BlobStore,
    private readonly index: CacheIndex,
    private readonly content: ContentHandler,
    private readonly access: AccessControl,
    private readonly tagTtl: number,
    private readonly cluster?: Cluster,
  ) {}

  /** For a peer: the answer recorded for a tag and Accept set, or for any Accept set. */
  async recordedAnswer(host: string, target: TagTarget, acceptSet: readonly string[]): Promise<TagEntry | undefined> {
    return (await this.index.getTag(tagKey(host, target.name, target.tag, acceptSet))) ?? (await this.index.getTag(anyAcceptKey(host, target)));
  }

  async handle(rr: RegistryRequest, target: TagTarget): Promise<void> {
    const acceptSet = normalizeAccept(rr.req.headers.accept);
    const key = tagKey(rr.host, target.name, target.tag, acceptSet);
    if (this.tagTtl > 0) {
      const fresh = await this.index.getTag(key);
      const usable = fresh && Date.now() - fresh.recorded < this.tagTtl ? await this.usableRecord(rr, target, fresh) : undefined;
      if (usable) {
        const decision = await this.access.authorize(rr, target.name, tagPath(target));
        rr.log.access = decision.result;
        if (!decision.allowed) decision.refuse();
        else this.serveRecorded(rr, usable, "HIT");
        return;
      }
    }
    let head: UpstreamResponse;
    try {
      // Redirects are followed here too: relayed, a redirect loop would send the client round it.
      ({ response: head } = await requestFollowingRedirects(this.upstream, {
        host: rr.host,
        port: rr.port,
        method: "HEAD",
        path: tagPath(target),
        headers: upstreamRequestHeaders(rr.req.headers, ["range", "if-none-match", "if-modified-since", "content-length"]),
      }));
    } catch (err) {
      if (!isUpstreamOutage(err)) throw err;
      const status = err instanceof UpstreamError && err.rateLimited ? 429 : err instanceof UpstreamError && err.failure === "protocol" ? 502 : 503;
      await this.serveStale(rr, target, key, (err as Error).message, status);
      return;
    }
    await head.body.dump();
    rr.log.upstreamStatus = head.statusCode;
    if (isUnavailableStatus(head.statusCode)) {
      await this.serveStale(rr, target, key, `upstream answered ${head.statusCode}`, head.statusCode);
      return;
    }
    const digest = parseDigest(headerValue(head.headers["docker-content-digest"]) ?? "");
    if (head.statusCode === 401) this.access.recordChallenge(rr.host, headerValue(head.headers["www-authenticate"]));
    if (head.statusCode !== 200 || !digest) {
      // Auth challenges, 404s and registries that omit the digest on HEAD: the client gets upstream's own answer.
      if (rr.req.method === "HEAD") relayUpstreamResponse(rr, head, "BYPASS");
      else await passThrough(this.upstream, rr, "BYPASS");
      rr.log.cache = "BYPASS";
      return;
    }
    rr.log.digest = digest.value;
    // Upstream just answered this client's own credentials for this repository: that is the access check.
    this.access.recordConfirmation(rr, target.name);
    rr.log.access = "confirmed";
    const manifest = { kind: "manifest" as const, name: target.name, digest };
    const entry = await this.content.usableEntry(rr, manifest);
    if (entry) {
      // Upstream named this digest for this repository's tag, to this client: the repository has it.
      this.store.link(digest, `${rr.host}/${target.name}`);
      this.content.serveCached(rr, manifest, entry, "HIT");
      await this.record(key, rr.host, target, { digest: digest.value, mediaType: entry.mediaType, size: entry.size, recorded: Date.now() });
      return;
    }
    if (rr.req.method === "HEAD") {
      relayUpstreamResponse(rr, head, "MISS");
      rr.log.cache = "MISS";
      // containerd HEADs the tag and then GETs the digest: record the answer now, so that the
      // tag resolves during an outage once that digest is cached (stale answers need both).
      const length = Number(headerValue(head.headers["content-length"]));
      await this.record(key, rr.host, target, { digest: digest.value, mediaType: headerValue(head.headers["content-type"]) ?? "", size: Number.isFinite(length) ? length : 0, recorded: Date.now() });
      return;
    }
    await this.content.handle(rr, manifest);
    const stored = this.store.lookup(digest);
    if (stored) await this.record(key, rr.host, target, { digest: digest.value, mediaType: stored.mediaType, size: stored.size, recorded: Date.now() });
    else this.recordWhenStored(key, rr.host, target, digest.value);
  }

  /** The cached, acceptable manifest a recorded tag answer points to, if there is one. */
  private async usableRecord(rr: RegistryRequest, target: TagTarget, recorded: TagEntry): Promise<RecordedManifest | undefined> {
    const digest = parseDigest(recorded.digest);
    if (!digest) return undefined;
    const manifest = { kind: "manifest" as const, name: target.name, digest };
    const entry = await this.content.usableEntry(rr, manifest);
    return entry ? { manifest, entry } : undefined;
  }

  private serveRecorded(rr: RegistryRequest, recorded: RecordedManifest, cache: "HIT" | "STALE"): void {
    rr.log.digest = recorded.manifest.digest.value;
    this.content.serveCached(rr, recorded.manifest, recorded.entry, cache, cache === "STALE" ? { warning: STALE_WARNING } : {});
  }

  private async serveStale(rr: RegistryRequest, target: TagTarget, key: string, reason: string, status: number): Promise<void> {
    const exact = await this.index.getTag(key);
    let usable = exact ? await this.usableRecord(rr, target, exact) : undefined;
    if (!usable) {
      const latest = await this.index.getTag(anyAcceptKey(rr.host, target));
      usable = latest ? await this.usableRecord(rr, target, latest) : undefined;
    }
    if (!usable && this.cluster && !rr.fromPeer) usable = await this.fromPeers(rr, target, key);
    if (usable) {
      const decision = await this.access.authorizeOffline(rr, target.name);
      rr.log.access = decision.result;
      if (!decision.allowed) decision.refuse();
      else this.serveRecorded(rr, usable, "STALE");
      return;
    }
    // Nothing was served from the cache: a miss, whatever upstream's trouble was.
    rr.log.cache = "MISS";
    // 429: the registry asks clients to slow down; 502: it answered, wrongly; 503: no usable answer.
    const code = status === 429 ? "TOOMANYREQUESTS" : "UNAVAILABLE";
    sendRegistryError(rr.res, status === 429 || status === 502 ? status : 503, code, `${rr.host}/${target.name}:${target.tag} is not cached and upstream is unavailable: ${reason}`, {
      "x-cache": "MISS",
      "cache-status": `regcache; fwd=miss; detail=upstream-${status === 429 ? "rate-limited" : status === 502 ? "invalid" : "unavailable"}`,
    });
  }

  /**
   * Upstream cannot answer and this replica never recorded the tag: the newest answer a peer
   * recorded, with its manifest copied from a peer that holds it for this repository.
   */
  private async fromPeers(rr: RegistryRequest, target: TagTarget, key: string): Promise<RecordedManifest | undefined> {
    const answer = await this.cluster!.tagFromPeers({ host: rr.host, port: rr.port, name: target.name, tag: target.tag, acceptSet: normalizeAccept(rr.req.headers.accept) });
    const digest = answer ? parseDigest(answer.digest) : undefined;
    if (!answer || !digest) return undefined;
    const manifest = { kind: "manifest" as const, name: target.name, digest };
    if (!(await this.content.keepCopy(rr, manifest))) return undefined;
    await this.index.putTag(key, answer);
    return this.usableRecord(rr, target, answer);
  }

  private async record(key: string, host: string, target: TagTarget, entry: TagEntry): Promise<void> {
    await this.index.putTag(key, entry);
    await this.index.putTag(anyAcceptKey(host, target), entry);
  }

  private recordWhenStored(key: string, host: string, target: TagTarget, digest: string): void {
    const download = this.store.inFlight().find((d) => d.digest.value === digest);
    download?.done.then(
      () => this.record(key, host, target, { digest, mediaType: download.mediaType, size: download.written, recorded: Date.now() }),
      () => undefined,
    );
  }
}

function tagPath(target: TagTarget): string {
  return `/v2/${target.name}/manifests/${target.tag}`;
}

/**
 * The latest answer for a tag whatever the Accept set, for a stale answer to a
 * client whose Accept set differs from the one that warmed the cache; the cached
 * manifest is still served only if its media type is acceptable to that client.
 */
function anyAcceptKey(host: string, target: TagTarget): string {
  return tagKey(host, target.name, target.tag, ["*"]);
}
