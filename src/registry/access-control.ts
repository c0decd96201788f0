import { createHmac } from "node:crypto";
import type { CacheIndex } from "../cache/cache-index.js";
import type { Logger } from "../log/logger.js";
import type { UpstreamClient, UpstreamResponse } from "../upstream/client.js";
import { headerValue } from "../upstream/headers.js";
import { isUnavailableStatus, isUpstreamOutage } from "../upstream/upstream-error.js";
import { requestRegistryToken } from "../upstream/token-request.js";
import { parseWwwAuthenticate } from "../upstream/www-authenticate.js";
import type { OfflineAccess } from "../config/config.js";
import { offlineAllows, onlineStep, type AccessTimings } from "./access-policy.js";
import { classifyConfirmation } from "./link-policy.js";
import { passThrough } from "./pass-through.js";
import { errorReply, writeReply, type Reply } from "./reply.js";
import { cacheStatusHeaders, type RegistryRequest } from "./request-context.js";
import { LruMap } from "../util/lru-map.js";

export type AccessResult = "public" | "confirmed" | "offline-allowed" | "denied" | "offline-denied" | "unlinked-unavailable";

/** Decisions by result. Made before AccessControl by the composition root, so metrics exist before the upstream client that reports to them. */
export type AccessCounts = Record<AccessResult, number>;

export function emptyAccessCounts(): AccessCounts {
  return { public: 0, confirmed: 0, "offline-allowed": 0, denied: 0, "offline-denied": 0, "unlinked-unavailable": 0 };
}

export type AccessDecision =
  /** contentType: what upstream's confirmation said the content is in this repository, when it was asked. */
  | { allowed: true; result: AccessResult; contentType?: string }
  /** Upstream refused this client: its own answer to the client's request is relayed. */
  | { allowed: false; result: "denied" }
  /** Upstream cannot be asked: regcache's own refusal (the offline 401, or 503 for unlinked content). */
  | { allowed: false; result: AccessResult; refusal: Reply };

/**
 * Logs how access was settled and, for a refusal, answers it: a denial with upstream's own answer
 * to this request (status, challenge and body as the registry gives them), anything else with
 * regcache's refusal. Says whether to serve.
 */
export async function settleAccess(rr: RegistryRequest, decision: AccessDecision, upstream: UpstreamClient): Promise<boolean> {
  rr.log.access = decision.result;
  if (decision.allowed) return true;
  if ("refusal" in decision) {
    rr.log.cache = "BYPASS";
    writeReply(rr.res, decision.refusal, rr.req.method);
  } else await passThrough(upstream, rr, "BYPASS");
  return false;
}

/**
 * What the offline policy says of a peer's copy for one client, the rule it was given when its
 * access was decided: what regcache recorded of the client and the repository, and the peer's own
 * finding that the repository is public (it travels with the copy). Judging counts the decision
 * and records it on the request's log line.
 */
export interface OfflineRule {
  judge(peerPublicSince: number | undefined): Promise<AccessDecision>;
}

export interface AccessOptions extends AccessTimings {
  offlineAccess: OfflineAccess;
}

/** A confirmation is persisted (for the offline grace period) at most this often per key. */
const PERSIST_EVERY_MS = 60_000;
/** Entries in each in-memory cache of verdicts, confirmations and challenges. */
const MAX_CACHED = 10_000;

/**
 * Decides whether a client may have cached content of (host, repository): the
 * proxy sees each pod's own pull credentials, and a cached private blob must never
 * reach a client that upstream would refuse. Public repositories are known by an
 * anonymous probe; otherwise upstream is asked with the client's own Authorization.
 */
export class AccessControl {
  // Memory caches of rows in the index, keyed by repository, credential or host: bounded,
  // since clients choose those, and an evicted entry costs one index read when next needed.
  private readonly publicVerdicts = new LruMap<string, { isPublic: boolean; checkedAt: number }>(MAX_CACHED);
  private readonly confirmations = new LruMap<string, number>(MAX_CACHED);
  private readonly persistedAt = new LruMap<string, number>(MAX_CACHED);
  private readonly challenges = new LruMap<string, string>(MAX_CACHED);
  /** Anonymous probes in flight, by repository: what a peer is told waits for them (publicSince). */
  private readonly learning = new Map<string, Promise<void>>();

  constructor(
    private readonly upstream: UpstreamClient,
    private readonly index: CacheIndex,
    private readonly secret: Buffer,
    private readonly options: AccessOptions,
    private readonly logger: Logger,
    readonly counts: AccessCounts = emptyAccessCounts(),
  ) {}

  /** HMAC of the Authorization header: credentials are compared, never stored or logged. */
  credentialKey(rr: RegistryRequest): string {
    const authorization = headerValue(rr.req.headers.authorization) ?? "";
    return authorization ? createHmac("sha256", this.secret).update(authorization).digest("hex").slice(0, 32) : "anonymous";
  }

  /** Upstream said yes to this client for this repository (e.g. a tag revalidation answered 200). */
  recordConfirmation(rr: RegistryRequest, name: string): void {
    const key = `${this.credentialKey(rr)}:${rr.host}/${name}`;
    const now = Date.now();
    this.confirmations.set(key, now);
    if (now - (this.persistedAt.get(key) ?? 0) > PERSIST_EVERY_MS) {
      this.persistedAt.set(key, now);
      // Durable only for --offline-grace after a restart: the response does not wait for the write.
      void this.index.putMeta(`auth:${key}`, now).catch((err: unknown) => this.logger.warn({ err }, "cannot persist confirmation"));
    }
  }

  /**
   * At start: drops persisted confirmations older than the longest window they count in
   * (--auth-ttl online, --offline-grace offline), which no decision reads again; says how many.
   */
  pruneConfirmations(now = Date.now()): Promise<number> {
    const longest = Math.max(this.options.authTtl, this.options.offlineGrace);
    return this.index.pruneMeta((key, value) => !key.startsWith("auth:") || typeof value !== "number" || now - value < longest);
  }

  /** Remembers the last auth challenge of a host (durably), to repeat it when the host is down. */
  recordChallenge(host: string, header: string | undefined): void {
    if (!header || this.challenges.get(host) === header) return;
    this.challenges.set(host, header);
    this.index.putMeta(`challenge:${host}`, header).catch(() => undefined);
  }

  async lastChallenge(host: string): Promise<string | undefined> {
    const known = this.challenges.get(host);
    if (known) return known;
    const stored = await this.index.getMeta<string>(`challenge:${host}`);
    if (stored) this.challenges.set(host, stored);
    return stored;
  }

  /**
   * The first time content of a repository is cached, learn whether anyone may read it
   * (anonymous probe), so that later hits, online or offline, need no round trip for it.
   */
  learnPublic(rr: RegistryRequest, name: string, probePath: string): void {
    const repoKey = `${rr.host}/${name}`;
    if (this.learning.has(repoKey)) return;
    const learnt = this.publicVerdict(repoKey)
      .then(async (known) => {
        if (known && Date.now() - known.checkedAt < this.options.publicTtl) return;
        const verdict = await this.probePublic(rr, probePath);
        if (verdict !== "unreachable") await this.storeVerdict(repoKey, verdict === "public");
      })
      .catch((err: unknown) => this.logger.debug({ err, repository: repoKey }, "public probe failed"))
      .finally(() => this.learning.delete(repoKey));
    this.learning.set(repoKey, learnt);
  }

  /** When a repository was last found public, for a peer that copies its content (cluster). */
  async publicSince(host: string, name: string): Promise<number | undefined> {
    const verdict = await this.publicVerdict(`${host}/${name}`);
    return verdict?.isPublic ? verdict.checkedAt : undefined;
  }

  /**
   * publicSince once the probe in flight for the repository (if any) settled: for a tag answer sent
   * to a peer in the background right after the fill that started the probe.
   */
  async settledPublicSince(host: string, name: string): Promise<number | undefined> {
    await this.learning.get(`${host}/${name}`);
    return this.publicSince(host, name);
  }

  /** A peer found this repository public: while upstream is down, that is the best knowledge there is. */
  async adoptPublicVerdict(host: string, name: string, checkedAt: number): Promise<void> {
    const known = await this.publicVerdict(`${host}/${name}`);
    if (known && known.checkedAt >= checkedAt) return;
    const verdict = { isPublic: true, checkedAt };
    this.publicVerdicts.set(`${host}/${name}`, verdict);
    await this.index.putMeta(`public:${host}/${name}`, verdict).catch(() => undefined);
  }

  private async storeVerdict(repoKey: string, isPublic: boolean): Promise<void> {
    const verdict = { isPublic, checkedAt: Date.now() };
    this.publicVerdicts.set(repoKey, verdict);
    await this.index.putMeta(`public:${repoKey}`, verdict).catch(() => undefined);
  }

  /**
   * The challenge a /v2/ ping gets while upstream is down: a Basic registry's last
   * challenge, so its clients send credentials that can be matched against
   * confirmations. None under "all" (nothing is checked) or for token registries
   * (their token endpoint is likely down too).
   */
  async offlinePingChallenge(host: string): Promise<string | undefined> {
    if (this.options.offlineAccess === "all") return undefined;
    const challenge = await this.lastChallenge(host);
    return challenge && parseWwwAuthenticate(challenge)[0]?.scheme === "basic" ? challenge : undefined;
  }

  /** When upstream is already known to be unreachable: decide from what was recorded, without asking it. */
  async authorizeOffline(rr: RegistryRequest, name: string): Promise<AccessDecision> {
    const repoKey = `${rr.host}/${name}`;
    const facts = { now: Date.now(), publicVerdict: await this.publicVerdict(repoKey), confirmedAt: await this.confirmedAt(`${this.credentialKey(rr)}:${repoKey}`) };
    return this.offline(rr, facts);
  }

  /**
   * The offline policy's rule for copies peers hold (see OfflineRule). What is recorded of the
   * client is read when a copy is judged: most fills never get that far (upstream answers).
   */
  offlineRule(rr: RegistryRequest, name: string): OfflineRule {
    return {
      judge: async (peerPublicSince) => {
        const repoKey = `${rr.host}/${name}`;
        const known = await this.publicVerdict(repoKey);
        const publicVerdict = peerPublicSince !== undefined && !(known && known.checkedAt >= peerPublicSince) ? { isPublic: true, checkedAt: peerPublicSince } : known;
        const decision = await this.offline(rr, { now: Date.now(), publicVerdict, confirmedAt: await this.confirmedAt(`${this.credentialKey(rr)}:${repoKey}`) });
        rr.log.access = decision.result;
        return decision;
      },
    };
  }

  async authorize(rr: RegistryRequest, name: string, probePath: string): Promise<AccessDecision> {
    const repoKey = `${rr.host}/${name}`;
    const credKey = `${this.credentialKey(rr)}:${repoKey}`;
    const anonymous = !rr.req.headers.authorization;
    const facts = { now: Date.now(), publicVerdict: await this.publicVerdict(repoKey), confirmedAt: await this.confirmedAt(credKey), anonymous };
    let step = onlineStep(facts, this.options);
    if (step === "probe-public") {
      const verdict = await this.probePublic(rr, probePath);
      if (verdict === "unreachable") return this.offline(rr, facts);
      await this.storeVerdict(repoKey, verdict === "public");
      step = verdict === "public" && anonymous ? "allow" : "check-client";
    }
    if (step === "allow") return this.allow(anonymous && (facts.publicVerdict?.isPublic || this.publicVerdicts.get(repoKey)?.isPublic) ? "public" : "confirmed");
    let response: UpstreamResponse;
    try {
      response = await this.upstream.request({ host: rr.host, port: rr.port, method: "HEAD", path: probePath, headers: checkHeaders(rr) });
      await response.body.dump();
    } catch (err) {
      if (!isUpstreamOutage(err)) throw err;
      return this.offline(rr, facts);
    }
    if (isUnavailableStatus(response.statusCode)) return this.offline(rr, facts);
    if (response.statusCode < 400) {
      this.recordConfirmation(rr, name);
      return this.allow("confirmed");
    }
    this.recordChallenge(rr.host, headerValue(response.headers["www-authenticate"]));
    this.counts.denied += 1;
    return { allowed: false, result: "denied" };
  }

  /**
   * For content cached from elsewhere: asks upstream whether this repository has the digest,
   * with the client's own credentials (a HEAD: no body is fetched again). Yes links it (with the
   * Content-Type upstream gives it there) and confirms the client; no is relayed; no answer
   * refuses, whatever --offline-access says, since nothing says this repository has it.
   */
  async confirmInRepository(rr: RegistryRequest, name: string, probePath: string): Promise<AccessDecision> {
    let status: number | "unreachable";
    let challenge: string | undefined;
    let contentType: string | undefined;
    try {
      const response = await this.upstream.request({ host: rr.host, port: rr.port, method: "HEAD", path: probePath, headers: checkHeaders(rr) });
      await response.body.dump();
      status = response.statusCode;
      challenge = headerValue(response.headers["www-authenticate"]);
      contentType = headerValue(response.headers["content-type"]);
      rr.log.upstreamStatus = status;
    } catch (err) {
      if (!isUpstreamOutage(err)) throw err;
      status = "unreachable";
    }
    const verdict = classifyConfirmation(status);
    if (verdict === "linked") {
      this.recordConfirmation(rr, name);
      return { ...this.allow("confirmed"), contentType };
    }
    if (verdict === "unavailable") {
      this.counts["unlinked-unavailable"] += 1;
      const reason = status === "unreachable" ? "unreachable" : `answering ${status}`;
      return { allowed: false, result: "unlinked-unavailable", refusal: refusal(503, undefined, `upstream ${rr.host} is ${reason}, and this content is not known to be in ${rr.host}/${name}`) };
    }
    if (status === 401) this.recordChallenge(rr.host, challenge);
    this.counts.denied += 1;
    return { allowed: false, result: "denied" };
  }

  private allow(result: "public" | "confirmed" | "offline-allowed"): Extract<AccessDecision, { allowed: true }> {
    this.counts[result] += 1;
    return { allowed: true, result };
  }

  private async offline(rr: RegistryRequest, facts: { now: number; publicVerdict?: { isPublic: boolean; checkedAt: number }; confirmedAt?: number }): Promise<AccessDecision> {
    if (offlineAllows(facts, this.options.offlineAccess, this.options)) return this.allow("offline-allowed");
    this.counts["offline-denied"] += 1;
    const challenge = await this.lastChallenge(rr.host);
    return {
      allowed: false,
      result: "offline-denied",
      refusal: refusal(401, challenge, `upstream ${rr.host} is unreachable and this client is not confirmed for this repository (--offline-access ${this.options.offlineAccess})`),
    };
  }

  private async publicVerdict(repoKey: string): Promise<{ isPublic: boolean; checkedAt: number } | undefined> {
    const known = this.publicVerdicts.get(repoKey);
    if (known) return known;
    const stored = await this.index.getMeta<{ isPublic: boolean; checkedAt: number }>(`public:${repoKey}`);
    if (stored) this.publicVerdicts.set(repoKey, stored);
    return stored;
  }

  private async confirmedAt(credKey: string): Promise<number | undefined> {
    const known = this.confirmations.get(credKey);
    if (known !== undefined) return known;
    const stored = await this.index.getMeta<number>(`auth:${credKey}`);
    if (stored !== undefined) this.confirmations.set(credKey, stored);
    return stored;
  }

  /** Anonymous HEAD; on a Bearer challenge, an anonymous token from the realm, and HEAD again. */
  private async probePublic(rr: RegistryRequest, probePath: string): Promise<"public" | "private" | "unreachable"> {
    try {
      const accept = headerValue(rr.req.headers.accept);
      const base: Record<string, string> = accept ? { accept } : {};
      const first = await this.upstream.request({ host: rr.host, port: rr.port, method: "HEAD", path: probePath, headers: base, anonymous: true });
      await first.body.dump();
      if (isUnavailableStatus(first.statusCode)) return "unreachable";
      if (first.statusCode < 400) return "public";
      const challenge = headerValue(first.headers["www-authenticate"]);
      this.recordChallenge(rr.host, challenge);
      const bearer = parseWwwAuthenticate(challenge).find((c) => c.scheme === "bearer");
      if (first.statusCode !== 401 || !bearer?.params.realm) return "private";
      const token = await requestRegistryToken((req) => this.upstream.request(req), bearer.params);
      if (!token) return "private";
      const second = await this.upstream.request({ host: rr.host, port: rr.port, method: "HEAD", path: probePath, headers: { ...base, authorization: `Bearer ${token.token}` }, anonymous: true });
      await second.body.dump();
      if (isUnavailableStatus(second.statusCode)) return "unreachable";
      return second.statusCode < 400 ? "public" : "private";
    } catch (err) {
      if (!isUpstreamOutage(err)) throw err;
      return "unreachable";
    }
  }
}

function checkHeaders(rr: RegistryRequest): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const name of ["authorization", "accept", "user-agent"]) {
    const value = headerValue(rr.req.headers[name]);
    if (value) headers[name] = value;
  }
  return headers;
}

/** regcache's own refusal, while upstream cannot be asked: 401 with the last challenge, or 503. */
function refusal(status: 401 | 503, challenge: string | undefined, message: string): Reply {
  return errorReply(status, status === 401 ? "UNAUTHORIZED" : "UNAVAILABLE", message, { ...(challenge ? { "www-authenticate": challenge } : {}), ...cacheStatusHeaders("BYPASS") });
}
