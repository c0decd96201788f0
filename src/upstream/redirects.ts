import type { UpstreamClient, UpstreamRequest, UpstreamResponse } from "./client.js";
import { UpstreamError } from "./upstream-error.js";

/** distribution, Docker Hub, ghcr.io and quay.io redirect blobs once, to a CDN; five hops is generous. */
const MAX_REDIRECTS = 5;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

export interface FinalResponse {
  response: UpstreamResponse;
  /** Host that sent the final answer (a CDN after a redirect). */
  host: string;
}

/**
 * Follows redirects server-side so the client gets the bytes (and we can cache
 * them under the digest, never under the signed, expiring CDN URL).
 * Authorization is dropped when the host changes: registry tokens must not leak to a CDN.
 */
export async function requestFollowingRedirects(client: UpstreamClient, initial: UpstreamRequest): Promise<FinalResponse> {
  let request = initial;
  for (let hop = 0; ; hop++) {
    const response = await client.request(request);
    const location = response.headers.location;
    if (!REDIRECT_STATUSES.has(response.statusCode) || typeof location !== "string") {
      return { response, host: request.host };
    }
    await response.body.dump();
    if (hop >= MAX_REDIRECTS) throw new UpstreamError("protocol", initial.host, `more than ${MAX_REDIRECTS} redirects`);
    const base = `https://${request.host}:${request.port}${request.path}`;
    let next: URL;
    try {
      next = new URL(location, base);
    } catch {
      throw new UpstreamError("protocol", request.host, "redirect to an unparsable Location");
    }
    if (next.protocol !== "https:") throw new UpstreamError("protocol", request.host, `refusing redirect to non-HTTPS ${next.protocol} URL`);
    const host = next.hostname.replace(/^\[|\]$/g, "");
    const headers = { ...request.headers };
    if (host !== request.host) delete headers.authorization;
    request = { ...request, host, port: Number(next.port) || 443, path: `${next.pathname}${next.search}`, headers, method: request.method === "HEAD" ? "HEAD" : "GET", body: null };
  }
}
