import { formatAuthority, type Send } from "./client.js";
import type { UpstreamHealth } from "./health.js";
import type { ProxyCredentials } from "./proxy-credentials.js";
import { classifyUpstreamError, isUnavailableStatus, isUpstreamFault, UpstreamError } from "./upstream-error.js";

/** Told of every exchange that reached the layer below: its status, or why it has none (metrics). */
export type UpstreamObserver = (host: string, status: number | undefined, failure: string | undefined) => void;

/**
 * Fails fast while a host's circuit is open, and reports every outcome to the breaker. Only
 * upstream faults and unavailable answers count against a host: a client's abort says nothing of it.
 */
export function withHealth(health: UpstreamHealth, send: Send): Send {
  return async (req) => {
    const authority = formatAuthority(req.host, req.port);
    if (health.isDown(authority)) {
      const rateLimited = health.isRateLimited(authority);
      throw new UpstreamError("circuit-open", req.host, `marked down after repeated ${rateLimited ? "429 answers" : "failures"}; waiting for the background probe`, { rateLimited });
    }
    try {
      const response = await send(req);
      if (isUnavailableStatus(response.statusCode)) health.recordFailure(authority, `HTTP ${response.statusCode}`, response.statusCode);
      else health.recordSuccess(authority);
      return response;
    } catch (err) {
      const failure = classifyUpstreamError(err, req.host);
      if (isUpstreamFault(failure.failure)) health.recordFailure(authority, failure.message);
      throw failure;
    }
  };
}

/** Reports the outcome of each exchange, after any auth dance below it: one request, one report. */
export function withObserver(observe: UpstreamObserver, send: Send): Send {
  return async (req) => {
    let response;
    try {
      response = await send(req);
    } catch (err) {
      const failure = classifyUpstreamError(err, req.host);
      observe(req.host, undefined, failure.failure);
      throw failure;
    }
    observe(req.host, response.statusCode, undefined);
    return response;
  };
}

/** Adds proxy-held credentials (--credentials) to the requests they apply to; none given, no layer. */
export function withCredentials(credentials: ProxyCredentials | undefined, send: Send): Send {
  if (!credentials) return send;
  return (req) => (credentials.appliesTo(req) ? credentials.send(req, send) : send(req));
}
