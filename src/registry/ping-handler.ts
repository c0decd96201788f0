import { isUnavailableStatus, isUpstreamOutage } from "../upstream/upstream-error.js";
import type { UpstreamClient } from "../upstream/client.js";
import { headerValue } from "../upstream/headers.js";
import type { AccessControl } from "./access-control.js";
import { API_VERSION_HEADER, errorReply, writeReply } from "./reply.js";
import { relayUpstreamResponse } from "./pass-through.js";
import { cacheStatusHeaders, type RegistryRequest } from "./request-context.js";

/**
 * GET /v2/: Docker and skopeo ping before anything else. While upstream answers,
 * its answer (with its auth challenge) passes through untouched; while it does
 * not, regcache says 200 {} itself, so the client goes on to cached content
 * without a token flow that could not succeed anyway.
 */
export class PingHandler {
  constructor(
    private readonly upstream: UpstreamClient,
    private readonly access: AccessControl,
  ) {}

  async handle(rr: RegistryRequest): Promise<void> {
    try {
      const response = await this.upstream.request({ host: rr.host, port: rr.port, method: rr.req.method ?? "GET", path: rr.req.url ?? "/v2/", headers: pingHeaders(rr) });
      if (!isUnavailableStatus(response.statusCode)) {
        if (response.statusCode === 401) this.access.recordChallenge(rr.host, headerValue(response.headers["www-authenticate"]));
        rr.log.cache = "BYPASS";
        relayUpstreamResponse(rr, response, "BYPASS");
        return;
      }
      rr.log.upstreamStatus = response.statusCode;
      await response.body.dump();
    } catch (err) {
      // An address the policy refuses is answered 403 like any other request to it, never 200 {}.
      if (!isUpstreamOutage(err)) throw err;
      rr.log.upstreamStatus = 0;
    }
    rr.log.cache = "STALE";
    // Basic-auth clients send credentials only after a challenge; see AccessControl.offlinePingChallenge.
    const challenge = await this.access.offlinePingChallenge(rr.host);
    if (challenge && !rr.req.headers.authorization) {
      writeReply(rr.res, errorReply(401, "UNAUTHORIZED", "authentication required", { "www-authenticate": challenge, ...cacheStatusHeaders("STALE") }), rr.req.method);
      return;
    }
    const text = "{}";
    writeReply(rr.res, { status: 200, headers: { "content-type": "application/json", "content-length": text.length, ...API_VERSION_HEADER, ...cacheStatusHeaders("STALE") }, body: { kind: "text", text } }, rr.req.method);
  }
}

function pingHeaders(rr: RegistryRequest): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const name of ["authorization", "user-agent", "accept"]) {
    const value = rr.req.headers[name];
    if (typeof value === "string") headers[name] = value;
  }
  return headers;
}
