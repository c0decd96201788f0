import type { IncomingMessage, ServerResponse } from "node:http";
import { isIP } from "node:net";
import type { HostPort } from "../config/parse.js";
import { isRepositoryName } from "../oci/names.js";
import { decideConnect, type ConnectPolicy } from "../proxy/connect-policy.js";
import type { RequestRunner } from "../proxy/request-runner.js";
import { API_VERSION_HEADER, errorReply, writeReply } from "../registry/reply.js";
import type { RegistryRequest } from "../registry/request-context.js";
import { unsafePathReason } from "../registry/request-judgement.js";
import { parseRegistryPath } from "../registry/routes.js";
import type { AnonymousTokens } from "./anonymous-tokens.js";
import { parseMirrorTarget, type MirrorTarget } from "./mirror-target.js";

export interface MirrorRequestDeps {
  run: RequestRunner;
  /** The proxy's policy for CONNECT targets, applied to the upstream a mirror request names. */
  policy: ConnectPolicy;
  defaultUpstream: HostPort;
  tokens: AnonymousTokens;
  /** Whether --credentials holds credentials for a host: they, not an anonymous token, answer for clients that send none. */
  holdsCredentials: (host: string) => boolean;
}

/**
 * Every request to the mirror port. It becomes the request a proxy client would have sent
 * through CONNECT to the upstream it names (mirror-target.ts), and from there takes the same
 * path: the registry handler, the cache, access control, the outage answers, the log line.
 */
export function createMirrorRequestHandler(deps: MirrorRequestDeps) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const rr: RegistryRequest = { req, res, host: "", port: 0, log: { host: "", method: req.method ?? "", path: (req.url ?? "").slice(0, 512), client: req.socket.remoteAddress } };
    deps.run(rr, () => admit(rr, deps));
  };
}

async function admit(rr: RegistryRequest, deps: MirrorRequestDeps): Promise<boolean> {
  const { req } = rr;
  const url = req.url ?? "/";
  // A mirror serves pulls: nothing a client sends here may change a registry, whatever credentials regcache holds.
  if (req.method !== "GET" && req.method !== "HEAD") return refuse(rr, 405, "UNSUPPORTED", `the mirror serves pulls only (GET, HEAD), not ${String(req.method).slice(0, 20)}`, { allow: "GET, HEAD" });
  // Checked before the upstream is taken from the path, so that no dot segment can pick it.
  const unsafe = unsafePathReason(url);
  if (unsafe) return refuse(rr, 400, "NAME_INVALID", `refused, not forwarded: ${unsafe}`);
  const parsed = parseMirrorTarget(url, deps.defaultUpstream);
  if (!parsed.ok) return refuse(rr, parsed.status, parsed.code, parsed.message);
  const { target } = parsed;
  rr.host = target.host;
  rr.port = target.port;
  rr.log.host = target.host;
  rr.log.mirror = target.namedBy;
  const decision = decideConnect(authority(target), deps.policy);
  if (decision.action === "deny") return refuse(rr, 403, "DENIED", decision.reason);
  if (decision.action === "tunnel") {
    // The proxy would pass this host's TLS through untouched (--no-intercept, outside the CA's name constraints): the mirror leaves it to the registry itself.
    return refuse(rr, 403, "DENIED", `regcache does not serve ${target.host} (--no-intercept or outside the CA's name constraints): pull it from the registry itself`);
  }
  req.url = target.url;
  if (target.url === "/v2/") return answerPing(rr);
  if (req.headers.authorization === undefined && !deps.holdsCredentials(target.host)) await addAnonymousToken(rr, target, deps.tokens);
  return true;
}

/**
 * The mirror's own /v2/: it is a registry of its own, open to pulls. containers/image pings without
 * naming the upstream, so no upstream's challenge could be the right one; and a client told
 * "no auth" sends none, so regcache fetches what anonymous clients may have (anonymous-tokens.ts).
 */
function answerPing(rr: RegistryRequest): false {
  rr.log.kind = "ping";
  const text = "{}";
  writeReply(rr.res, { status: 200, headers: { "content-type": "application/json", "content-length": text.length, ...API_VERSION_HEADER }, body: { kind: "text", text } }, rr.req.method);
  return false;
}

async function addAnonymousToken(rr: RegistryRequest, target: MirrorTarget, tokens: AnonymousTokens): Promise<void> {
  const name = repositoryOf(target.url);
  if (!name) return;
  const authorization = await tokens.authorization(target.host, target.port, name);
  if (!authorization) return;
  rr.req.headers.authorization = authorization;
  rr.res.once("finish", () => {
    if (rr.res.statusCode === 401) tokens.forget(target.host, target.port, name);
  });
}

/** The repository a request is for: content and tags by the registry routes, tag lists by their path. */
function repositoryOf(url: string): string | undefined {
  const path = url.split("?")[0]!;
  const route = parseRegistryPath(path);
  if (route.kind === "blob" || route.kind === "manifest" || route.kind === "tag") return route.name;
  const list = /^\/v2\/(.+)\/tags\/list$/.exec(path)?.[1];
  return list && isRepositoryName(list) ? list : undefined;
}

function authority(target: HostPort): string {
  return `${isIP(target.host) === 6 ? `[${target.host}]` : target.host}:${target.port}`;
}

function refuse(rr: RegistryRequest, status: number, code: Parameters<typeof errorReply>[1], message: string, headers: Record<string, string> = {}): false {
  rr.log.cache = "BYPASS";
  writeReply(rr.res, errorReply(status, code, message, headers), rr.req.method);
  return false;
}
