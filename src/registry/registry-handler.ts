import type { UpstreamClient } from "../upstream/client.js";
import type { ContentHandler } from "./content-handler.js";
import { RegcacheError } from "../errors.js";
import { sendFailure } from "./errors.js";
import { errorReply, writeReply } from "./reply.js";
import { hasRequestBody, passThrough } from "./pass-through.js";
import { cacheStatusHeaders, type RegistryRequest } from "./request-context.js";
import { isCleanPath, parseRegistryPath } from "./routes.js";
import type { TagHandler } from "./tag-handler.js";
import type { PingHandler } from "./ping-handler.js";

/** Routes one intercepted request: what is immutable goes through the cache, the rest streams through. */
export class RegistryHandler {
  constructor(
    private readonly upstream: UpstreamClient,
    private readonly content: ContentHandler,
    private readonly tags: TagHandler,
    private readonly ping: PingHandler,
  ) {}

  async handle(rr: RegistryRequest): Promise<void> {
    try {
      await this.route(rr);
    } catch (err) {
      // Anticipated failures are answered by their code; anything else is a fault of regcache's own, logged where it is caught.
      if (!(err instanceof RegcacheError)) throw err;
      sendFailure(rr, err);
    }
  }

  private async route(rr: RegistryRequest): Promise<void> {
    const url = rr.req.url ?? "/";
    const query = url.indexOf("?");
    const route = parseRegistryPath(query < 0 ? url : url.slice(0, query));
    if (!isCleanPath(url)) {
      rr.log.cache = "BYPASS";
      writeReply(rr.res, errorReply(400, "NAME_INVALID", "request path has dot segments, encoded dots or slashes, or NUL", cacheStatusHeaders("BYPASS")), rr.req.method);
      return;
    }
    // A GET or HEAD that carries a body is not a plain read: it streams through untouched, body included.
    const readOnly = (rr.req.method === "GET" || rr.req.method === "HEAD") && !hasRequestBody(rr.req.headers);
    rr.log.kind = route.kind === "blob" || route.kind === "manifest" || route.kind === "tag" || route.kind === "ping" ? route.kind : "other";
    switch (route.kind) {
      case "invalid":
        rr.log.cache = "BYPASS";
        writeReply(rr.res, errorReply(400, route.code, route.message, cacheStatusHeaders("BYPASS")), rr.req.method);
        return;
      case "blob":
      case "manifest":
        rr.log.repository = route.name;
        rr.log.digest = route.digest.value;
        if (!readOnly || query >= 0) break;
        await this.content.handle(rr, route);
        return;
      case "tag":
        rr.log.repository = route.name;
        rr.log.tag = route.tag;
        if (!readOnly || query >= 0) break;
        await this.tags.handle(rr, route);
        return;
      case "ping":
        if (!readOnly) break;
        await this.ping.handle(rr);
        return;
      case "other":
        break;
    }
    rr.log.cache = "BYPASS";
    await passThrough(this.upstream, rr);
  }
}
