import type { BlobStore } from "../cache/blob-store.js";
import type { BlobEntry, TagEntry } from "../cache/cache-index.js";
import { servedType } from "../cache/manifest-types.js";
import type { TagName, RecordedTags } from "../cache/recorded-tags.js";
import { parseDigest, type Digest } from "../oci/digest.js";
import type { UpstreamClient, UpstreamResponse } from "../upstream/client.js";
import { headerValue, upstreamRequestHeaders } from "../upstream/headers.js";
import { requestFollowingRedirects } from "../upstream/redirects.js";
import { classifyUpstreamError, isUpstreamOutage, type UpstreamFailure } from "../upstream/upstream-error.js";
import { acceptAllows, normalizeAccept } from "./accept.js";
import { settleAccess, type AccessControl } from "./access-control.js";
import { passThrough, relayUpstreamResponse } from "./pass-through.js";
import { errorReply, writeReply } from "./reply.js";
import type { RegistryRequest } from "./request-context.js";
import { decideTagAnswer, type TagFacts, type TagStep } from "./tag-answer.js";
import type { TagPeers } from "./tag-peers.js";
import { TagRevalidations } from "./tag-revalidations.js";

export interface TagTarget {
  name: string;
  tag: string;
}

interface ManifestTarget {
  kind: "manifest";
  name: string;
  digest: Digest;
}

/** A recorded answer whose manifest is cached and acceptable to this client, and its type in this repository. */
interface RecordedManifest {
  manifest: ManifestTarget;
  entry: BlobEntry;
  mediaType: string;
}

/**
 * What a tag answer needs of the content by digest (ContentHandler): manifests are served,
 * fetched and copied from peers exactly as by digest, with the same access rules.
 */
export interface ManifestContent {
  /** The cached entry, if its file is there. */
  cachedEntry(manifest: ManifestTarget): Promise<BlobEntry | undefined>;
  serveCached(rr: RegistryRequest, manifest: ManifestTarget, entry: BlobEntry, mediaType: string, cache: "HIT" | "STALE", extraHeaders?: Record<string, string>): Promise<void>;
  /** As a GET by digest: from the cache, else fetched (and stored). */
  handle(rr: RegistryRequest, manifest: ManifestTarget): Promise<void>;
  /** A copy from a peer that holds it for the repository; undefined when none does. */
  keepCopy(rr: RegistryRequest, manifest: ManifestTarget): Promise<BlobEntry | undefined>;
  /** The fleet's object store's copy, if it holds it for the repository; undefined when it does not. */
  keepShared(rr: RegistryRequest, manifest: ManifestTarget): Promise<BlobEntry | undefined>;
}

/** What a tag answer needs of the store: linking a digest upstream named, and when a fetched manifest is stored. */
export type ManifestStore = Pick<BlobStore, "link" | "lookup" | "downloading" | "whenStored">;

/** Upstream's answer to the tag HEAD (with the digest it names, and that digest's cache entry), or why there is none. */
type Asked =
  | { kind: "answered"; head: UpstreamResponse; manifest?: ManifestTarget; entry?: BlobEntry }
  | { kind: "failed"; reason: string; failure: UpstreamFailure; rateLimited: boolean };

/** RFC 9111 section 5.5 (obsoleted but still what clients and people recognise). */
const STALE_WARNING = '110 - "Response is stale"';

/**
 * GET/HEAD of a manifest by tag. Tags move, so upstream is asked (with a HEAD,
 * which Docker Hub does not count against its rate limit) which digest the tag
 * names now; the body then comes from the digest cache. When upstream cannot
 * answer (down, 5xx, 429, timeout), the last answer recorded for this tag and
 * Accept set is served, marked stale. What to do is decideTagAnswer's (tag-answer.ts):
 * this class gathers the facts it asks for, then carries out its answer.
 */
export class TagHandler {
  private readonly revalidations = new TagRevalidations<Asked>();

  constructor(
    private readonly upstream: UpstreamClient,
    private readonly store: ManifestStore,
    private readonly records: RecordedTags,
    private readonly content: ManifestContent,
    private readonly access: AccessControl,
    private readonly tagTtl: number,
    private readonly peers?: TagPeers,
  ) {}

  async handle(rr: RegistryRequest, target: TagTarget): Promise<void> {
    const tag = { host: rr.host, ...target };
    const acceptSet = normalizeAccept(rr.req.headers.accept);
    let recorded = this.tagTtl > 0 ? await this.freshRecord(rr, tag, acceptSet) : undefined;
    const facts: TagFacts = { method: rr.req.method ?? "GET", freshRecord: recorded !== undefined };
    let asked: Asked | undefined;
    for (;;) {
      const step = decideTagAnswer(facts);
      switch (step.kind) {
        case "ask-upstream": {
          const credentialScope = this.access.credentialKey(rr);
          const shared = this.revalidations.share({ host: rr.host, port: rr.port, ...target, acceptSet, credentialScope }, () => this.ask(rr, target));
          if (shared.joined) rr.log.coalesced = true;
          asked = await shared.answer;
          if (asked.kind === "answered") rr.log.upstreamStatus = asked.head.statusCode;
          facts.upstream = asked.kind === "answered" ? { status: asked.head.statusCode, digest: asked.manifest !== undefined, cached: asked.entry !== undefined } : asked;
          break;
        }
        case "find-recorded":
          recorded = await this.recordedWhileUnavailable(rr, tag, acceptSet);
          facts.staleRecord = recorded !== undefined;
          break;
        case "serve-recorded": {
          const decision = step.cache === "HIT" ? await this.access.authorize(rr, target.name, tagPath(target)) : await this.access.authorizeOffline(rr, target.name);
          if (await settleAccess(rr, decision, this.upstream)) await this.serveRecorded(rr, recorded!, step.cache);
          return;
        }
        case "unavailable":
          this.sendUnavailable(rr, target, step, asked?.kind === "failed" ? asked.reason : `upstream answered ${asked?.head.statusCode}`);
          return;
        default:
          // The remaining steps come only after upstream answered.
          await this.carryOut(rr, tag, acceptSet, step, asked as Extract<Asked, { kind: "answered" }>);
          return;
      }
    }
  }

  /** Upstream answered without trouble: its own answer relayed, or the digest it named served or fetched. */
  private async carryOut(rr: RegistryRequest, tag: TagName, acceptSet: readonly string[], step: TagStep, asked: Extract<Asked, { kind: "answered" }>): Promise<void> {
    const { head, manifest, entry } = asked;
    if (step.kind === "upstream-answer" || !manifest) {
      // Auth challenges, 404s and registries that omit the digest on HEAD: the client gets upstream's own answer.
      if (rr.req.method === "HEAD") relayUpstreamResponse(rr, head, "BYPASS");
      else await passThrough(this.upstream, rr, "BYPASS");
      rr.log.cache = "BYPASS";
      return;
    }
    rr.log.digest = manifest.digest.value;
    // Upstream just answered this client's own credentials for this repository: that is the access check.
    this.access.recordConfirmation(rr, tag.name);
    rr.log.access = "confirmed";
    const hostRepository = `${rr.host}/${tag.name}`;
    if (step.kind === "serve-cached" && entry) {
      // Upstream named this digest for this repository's tag, to this client: the repository has it, as the type upstream says there.
      this.store.link(manifest.digest, hostRepository, headerValue(head.headers["content-type"]));
      const mediaType = servedType(entry, hostRepository);
      if (mediaType === undefined) {
        // A manifest that declares no type, which upstream labels with no manifest type: its answer is its own.
        rr.log.forwarded = "media-type";
        await passThrough(this.upstream, rr, "BYPASS");
        return;
      }
      await this.content.serveCached(rr, manifest, entry, mediaType, "HIT");
      await this.record(rr, tag, acceptSet, { digest: manifest.digest.value, mediaType, size: entry.size, recorded: Date.now() });
      return;
    }
    if (step.kind === "head-miss") {
      relayUpstreamResponse(rr, head, "MISS");
      rr.log.cache = "MISS";
      // containerd HEADs the tag and then GETs the digest: record the answer now, so that the
      // tag resolves during an outage once that digest is cached (stale answers need both).
      const length = Number(headerValue(head.headers["content-length"]));
      await this.record(rr, tag, acceptSet, { digest: manifest.digest.value, mediaType: headerValue(head.headers["content-type"]) ?? "", size: Number.isFinite(length) ? length : 0, recorded: Date.now() });
      return;
    }
    await this.content.handle(rr, manifest);
    const record = (stored: BlobEntry | undefined) =>
      stored && this.record(rr, tag, acceptSet, { digest: manifest.digest.value, mediaType: servedType(stored, hostRepository) ?? "", size: stored.size, recorded: Date.now() });
    const download = this.store.downloading(manifest.digest);
    if (download) void this.store.whenStored(download).then(record);
    else await record(this.store.lookup(manifest.digest));
  }

  /** Upstream's answer, recorded; with peers, a second replica keeps it too (tag-peers.ts). */
  private async record(rr: RegistryRequest, tag: TagName, acceptSet: readonly string[], entry: TagEntry): Promise<void> {
    await this.records.record(tag, acceptSet, entry);
    this.peers?.recorded(rr, tag, acceptSet, entry);
  }

  /**
   * Which digest the tag names now, asked with the client's own credentials; or why upstream
   * cannot say. Shared by the requests of its scope (tag-revalidations.ts): it reads `rr` for the
   * request upstream gets and writes nothing of it.
   */
  private async ask(rr: RegistryRequest, target: TagTarget): Promise<Asked> {
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
      const failed = classifyUpstreamError(err, rr.host);
      return { kind: "failed", reason: failed.message, failure: failed.failure, rateLimited: failed.rateLimited };
    }
    await head.body.dump();
    if (head.statusCode === 401) this.access.recordChallenge(rr.host, headerValue(head.headers["www-authenticate"]));
    const digest = head.statusCode === 200 ? parseDigest(headerValue(head.headers["docker-content-digest"]) ?? "") : undefined;
    if (!digest) return { kind: "answered", head };
    const manifest = { kind: "manifest" as const, name: target.name, digest };
    const entry = await this.content.cachedEntry(manifest);
    return { kind: "answered", head, manifest, entry: entry?.kind === "manifest" ? entry : undefined };
  }

  /** The answer recorded for this Accept set within --tag-ttl, if its manifest is usable. */
  private async freshRecord(rr: RegistryRequest, tag: TagName, acceptSet: readonly string[]): Promise<RecordedManifest | undefined> {
    const fresh = await this.records.forAccept(tag, acceptSet);
    return fresh && Date.now() - fresh.recorded < this.tagTtl ? this.usableRecord(rr, tag, fresh, undefined) : undefined;
  }

  /**
   * While upstream cannot answer: the newest answer whose manifest is usable, among those recorded
   * here (for this Accept set, and the latest for any) and, with peers, the newest they recorded
   * (local first on a tie). A manifest this replica lacks is copied from a peer holding it for the
   * repository; a peer's answer served is kept here.
   */
  private async recordedWhileUnavailable(rr: RegistryRequest, tag: TagName, acceptSet: readonly string[]): Promise<RecordedManifest | undefined> {
    const peers = rr.fromPeer ? undefined : this.peers;
    const exact = await this.records.forAccept(tag, acceptSet);
    const local = [exact, await this.records.latest(tag)];
    const fromPeers = await peers?.newest(rr, tag, acceptSet);
    const answers = [...local, fromPeers].filter((a): a is TagEntry => a !== undefined).sort((a, b) => b.recorded - a.recorded);
    const tried = new Set<string>();
    for (const answer of answers) {
      if (tried.has(answer.digest)) continue;
      tried.add(answer.digest);
      // An answer upstream gave for this client's own Accept set suits it; any other must be of a type it accepts.
      const forClient = answer === exact ? undefined : acceptSet;
      const usable = (await this.usableRecord(rr, tag, answer, forClient)) ?? (peers && (await this.copiedRecord(rr, tag, answer, forClient)));
      if (!usable) continue;
      if (answer === fromPeers) await peers!.adopt(tag, acceptSet, answer);
      return usable;
    }
    return undefined;
  }

  /**
   * The cached manifest a recorded tag answer points to, with its type in this repository, if
   * there is one. `acceptSet`: the client's, for an answer recorded for another Accept set (its
   * type must suit this client); undefined for one recorded for this client's own Accept set.
   */
  private async usableRecord(rr: RegistryRequest, tag: TagName, recorded: TagEntry, acceptSet: readonly string[] | undefined): Promise<RecordedManifest | undefined> {
    const digest = parseDigest(recorded.digest);
    if (!digest) return undefined;
    const manifest = { kind: "manifest" as const, name: tag.name, digest };
    const entry = (await this.content.cachedEntry(manifest)) ?? (await this.content.keepShared(rr, manifest));
    const mediaType = entry?.kind === "manifest" ? servedType(entry, `${rr.host}/${tag.name}`) : undefined;
    if (!entry || mediaType === undefined || (acceptSet && !acceptAllows(acceptSet, mediaType))) return undefined;
    return { manifest, entry, mediaType };
  }

  private async serveRecorded(rr: RegistryRequest, recorded: RecordedManifest, cache: "HIT" | "STALE"): Promise<void> {
    rr.log.digest = recorded.manifest.digest.value;
    await this.content.serveCached(rr, recorded.manifest, recorded.entry, recorded.mediaType, cache, cache === "STALE" ? { warning: STALE_WARNING } : {});
  }

  private sendUnavailable(rr: RegistryRequest, target: TagTarget, step: Extract<TagStep, { kind: "unavailable" }>, reason: string): void {
    // Nothing was served from the cache: a miss, whatever upstream's trouble was.
    rr.log.cache = "MISS";
    const message = `${rr.host}/${target.name}:${target.tag} is not cached and upstream is unavailable: ${reason}`;
    writeReply(rr.res, errorReply(step.status, step.code, message, { "x-cache": "MISS", "cache-status": `regcache; fwd=miss; detail=upstream-${step.detail}` }), rr.req.method);
  }

  /** A recorded answer whose manifest is not here: the manifest copied from a peer that holds it for this repository. */
  private async copiedRecord(rr: RegistryRequest, tag: TagName, answer: TagEntry, acceptSet: readonly string[] | undefined): Promise<RecordedManifest | undefined> {
    const digest = parseDigest(answer.digest);
    if (!digest || !(await this.content.keepCopy(rr, { kind: "manifest", name: tag.name, digest }))) return undefined;
    return this.usableRecord(rr, tag, answer, acceptSet);
  }
}

function tagPath(target: TagTarget): string {
  return `/v2/${target.name}/manifests/${target.tag}`;
}
