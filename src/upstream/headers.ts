import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";

/** RFC 9110 section 7.6.1 hop-by-hop headers, plus the proxy's own ones: never forwarded. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "host",
]);

/**
 * Answered here, not forwarded: Node's server already sent the client "100 Continue"
 * (RFC 9110 section 10.1.1) and regcache streams the body on; undici refuses the header.
 */
const ANSWERED_LOCALLY = new Set(["expect"]);

/** Request headers a client sent, as they go upstream (undici sets Host from the origin). */
export function upstreamRequestHeaders(headers: IncomingHttpHeaders, drop: readonly string[] = []): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || ANSWERED_LOCALLY.has(name) || drop.includes(name)) continue;
    out[name] = value;
  }
  return out;
}

/** Response headers from upstream, as they go to the client; Node frames the body itself. */
export function clientResponseHeaders(headers: Record<string, string | string[] | undefined>): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name)) continue;
    out[name] = value;
  }
  return out;
}

export function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
