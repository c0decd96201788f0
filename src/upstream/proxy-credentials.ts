import { readFileSync } from "node:fs";
import { RegcacheError } from "../errors.js";
import type { Send, UpstreamRequest, UpstreamResponse } from "./client.js";
import { headerValue } from "./headers.js";
import { DEFAULT_TOKEN_SECONDS, requestRegistryToken } from "./token-request.js";
import { parseWwwAuthenticate } from "./www-authenticate.js";
import { LruMap } from "../util/lru-map.js";

export type HostCredential = { username: string; password: string } | { token: string };

export class CredentialsFileError extends RegcacheError {
  constructor(message: string) {
    super("CONFIG", message);
  }
}

/** Reads --credentials: {"registry-1.docker.io": {"username": "...", "password": "..."}, "ghcr.io": {"token": "..."}}. */
export function loadCredentialsFile(file: string): Map<string, HostCredential> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new CredentialsFileError(`cannot read --credentials ${file}: ${(err as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new CredentialsFileError(`--credentials ${file} must hold a JSON object keyed by registry host`);
  const out = new Map<string, HostCredential>();
  for (const [host, value] of Object.entries(parsed as Record<string, unknown>)) {
    const v = value as Record<string, unknown>;
    if (typeof v?.token === "string") out.set(host.toLowerCase(), { token: v.token });
    else if (typeof v?.username === "string" && typeof v?.password === "string") out.set(host.toLowerCase(), { username: v.username, password: v.password });
    else throw new CredentialsFileError(`--credentials ${file}: entry for ${host} needs "username" and "password", or "token"`);
  }
  return out;
}

/** The Basic Authorization header for a username/password credential. */
export function basicAuthorization(credential: { username: string; password: string }): string {
  return `Basic ${Buffer.from(`${credential.username}:${credential.password}`).toString("base64")}`;
}

const MAX_TOKENS = 1000;

/**
 * Runs the registry auth flow with proxy-held credentials for requests whose
 * client sent none: Basic directly, Bearer through the challenge's token realm.
 * Only bodiless requests are retried after a challenge.
 */
export class ProxyCredentials {
  /** Keyed by host and repository, which clients choose: bounded; an evicted token is fetched again. */
  private readonly tokens = new LruMap<string, { header: string; expires: number }>(MAX_TOKENS);

  constructor(private readonly credentials: Map<string, HostCredential>) {}

  appliesTo(req: UpstreamRequest): boolean {
    return !req.anonymous && req.headers.authorization === undefined && this.covers(req.host);
  }

  /** Whether credentials are held for this registry host. */
  covers(host: string): boolean {
    return this.credentials.has(host.toLowerCase());
  }

  async send(req: UpstreamRequest, send: Send): Promise<UpstreamResponse> {
    const credential = this.credentials.get(req.host.toLowerCase())!;
    if ("token" in credential) return send(withAuth(req, `Bearer ${credential.token}`));
    const cacheKey = `${req.host}${scopeHint(req.path)}`;
    const cached = this.tokens.get(cacheKey);
    const first = await send(cached && cached.expires > performance.now() ? withAuth(req, cached.header) : req);
    if (first.statusCode !== 401 || req.body) return first;
    const challenge = parseWwwAuthenticate(headerValue(first.headers["www-authenticate"]))[0];
    if (!challenge) return first;
    const basic = basicAuthorization(credential);
    let header: string | undefined;
    let lifetime = DEFAULT_TOKEN_SECONDS;
    if (challenge.scheme === "basic") header = basic;
    else if (challenge.scheme === "bearer" && challenge.params.realm) {
      const token = await requestRegistryToken(send, challenge.params, basic);
      if (token) {
        header = `Bearer ${token.token}`;
        lifetime = token.expiresIn;
      }
    }
    if (!header) return first;
    await first.body.dump();
    this.tokens.set(cacheKey, { header, expires: performance.now() + Math.max(5, lifetime - 10) * 1000 });
    return send(withAuth(req, header));
  }
}

function withAuth(req: UpstreamRequest, authorization: string): UpstreamRequest {
  return { ...req, headers: { ...req.headers, authorization } };
}

/** Token scopes are per repository: "/v2/<name>/..." keys the cache by name. */
function scopeHint(path: string): string {
  const match = /^\/v2\/(.+?)\/(?:blobs|manifests|tags)\//.exec(path);
  return match ? `/${match[1]}` : "";
}
