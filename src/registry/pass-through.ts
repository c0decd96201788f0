import type { UpstreamClient, UpstreamResponse } from "../upstream/client.js";
import { clientResponseHeaders, upstreamRequestHeaders } from "../upstream/headers.js";
import { watchClientAbort } from "./client-abort.js";
import { sendFailure } from "./errors.js";
import { writeReply } from "./reply.js";
import { hasRequestBody } from "./request-judgement.js";
import { cacheStatusHeaders, type CacheStatus, type RegistryRequest } from "./request-context.js";

/** Sends an upstream answer to the client as it is, streaming the body with backpressure. */
export function relayUpstreamResponse(rr: RegistryRequest, response: UpstreamResponse, cache: CacheStatus): void {
  rr.log.upstreamStatus = response.statusCode;
  rr.log.cache = cache;
  writeReply(rr.res, { status: response.statusCode, headers: { ...clientResponseHeaders(response.headers), ...cacheStatusHeaders(cache) }, body: { kind: "upstream", body: response.body } }, rr.req.method);
}

/**
 * Everything regcache does not cache (token endpoints, push, catalog, other paths)
 * goes to the CONNECT target unchanged, request body included, and comes back unchanged.
 */
export async function passThrough(client: UpstreamClient, rr: RegistryRequest, cache: CacheStatus = "BYPASS"): Promise<void> {
  let response: UpstreamResponse;
  try {
    response = await requestAsIs(client, rr);
  } catch (err) {
    sendFailure(rr, err);
    return;
  }
  relayUpstreamResponse(rr, response, cache);
}

/** The client's request sent upstream as it is: method, path, headers and any body. */
export function requestAsIs(client: UpstreamClient, rr: RegistryRequest): Promise<UpstreamResponse> {
  const hasBody = hasRequestBody(rr.req.headers);
  return client.request({
    host: rr.host,
    port: rr.port,
    method: rr.req.method ?? "GET",
    path: rr.req.url ?? "/",
    headers: upstreamRequestHeaders(rr.req.headers),
    body: hasBody ? rr.req : null,
    clientAborted: hasBody ? watchClientAbort(rr.req) : undefined,
  });
}
