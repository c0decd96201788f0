import { RegcacheError } from "../errors.js";
import type { UpstreamClient } from "../upstream/client.js";
import { headerValue } from "../upstream/headers.js";
import { requestRegistryToken } from "../upstream/token-request.js";
import { isUnavailableStatus } from "../upstream/upstream-error.js";
import { parseWwwAuthenticate } from "../upstream/www-authenticate.js";
import { LruMap } from "../util/lru-map.js";

/** How long what a registry's /v2/ said about its auth holds: a registry does not change its token service often. */
const CHALLENGE_TTL_MS = 10 * 60_000;
/** A token is dropped this long before it expires, so that it never expires on the way. Lifetimes run on the monotonic clock. */
const EXPIRY_MARGIN_MS = 10_000;
/** Keyed by registry and repository, which clients choose: bounded; an evicted token is fetched again. */
const MAX_KEPT = 10_000;

type Challenge = { kind: "bearer"; params: Record<string, string> } | { kind: "none" };

/**
 * Anonymous pull tokens for mirror clients that send no credentials. Runtimes ask a mirror for
 * what they would ask the registry, but a token registry's challenge then fails them: Docker and
 * containers/image take the mirror's /v2/ answer (regcache's own 200) as "no auth", and
 * containers/image would ask the token service for its own name of the repository, with the
 * registry in it (`repository:quay.io/app:pull`). So regcache asks for the token a client would,
 * anonymously, for `repository:<name>:pull`, and the request goes on with it. That reaches what
 * the registry serves anyone, nothing more: access control still asks the registry with it.
 */
export class AnonymousTokens {
  private readonly challenges = new LruMap<string, { challenge: Challenge; until: number }>(MAX_KEPT);
  private readonly tokens = new LruMap<string, { header: string; until: number }>(MAX_KEPT);
  /** One fetch per key at a time: a pull asks for a repository's layers all at once. */
  private readonly inFlight = new Map<string, Promise<string | undefined>>();

  constructor(private readonly upstream: UpstreamClient) {}

  /**
   * An Authorization header for an anonymous pull of host:port/name, or undefined when the registry
   * wants no token (open, or Basic auth), or none can be had now (the registry or its token service
   * unreachable or refused: the request goes on without one, and is answered as a proxy client's
   * would be, an outage by the cache).
   */
  async authorization(host: string, port: number, name: string): Promise<string | undefined> {
    const key = `${host}:${port}/${name}`;
    const kept = this.tokens.get(key);
    if (kept && kept.until > performance.now()) return kept.header;
    return this.once(key, async () => {
      const challenge = await this.challenge(host, port);
      if (challenge?.kind !== "bearer") return undefined;
      const token = await requestRegistryToken((req) => this.upstream.request(req), { ...challenge.params, scope: `repository:${name}:pull` }).catch(unlessAnticipated);
      if (!token) return undefined;
      const header = `Bearer ${token.token}`;
      this.tokens.set(key, { header, until: performance.now() + Math.max(5_000, token.expiresIn * 1000 - EXPIRY_MARGIN_MS) });
      return header;
    });
  }

  /** The registry refused a token it gave: the next request fetches a new one. */
  forget(host: string, port: number, name: string): void {
    this.tokens.delete(`${host}:${port}/${name}`);
  }

  /** What the registry's /v2/ answers an anonymous client: a Bearer challenge, or no need for a token. */
  private async challenge(host: string, port: number): Promise<Challenge | undefined> {
    const key = `${host}:${port}`;
    const kept = this.challenges.get(key);
    if (kept && kept.until > performance.now()) return kept.challenge;
    const response = await this.upstream.request({ host, port, method: "GET", path: "/v2/", headers: {}, anonymous: true }).catch(unlessAnticipated);
    if (!response) return undefined;
    await response.body.dump().catch(() => undefined);
    if (isUnavailableStatus(response.statusCode)) return undefined;
    const bearer = response.statusCode === 401 ? parseWwwAuthenticate(headerValue(response.headers["www-authenticate"])).find((c) => c.scheme === "bearer") : undefined;
    const challenge: Challenge = bearer?.params.realm ? { kind: "bearer", params: bearer.params } : { kind: "none" };
    this.challenges.set(key, { challenge, until: performance.now() + CHALLENGE_TTL_MS });
    return challenge;
  }

  private once(key: string, fetch: () => Promise<string | undefined>): Promise<string | undefined> {
    const running = this.inFlight.get(key);
    if (running) return running;
    const started = fetch().finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, started);
    return started;
  }
}

/** An upstream failure (or refusal) means no token; anything else is a fault of regcache's own. */
function unlessAnticipated(err: unknown): undefined {
  if (err instanceof RegcacheError) return undefined;
  throw err;
}
