import type { UpstreamClient } from "../upstream/client.js";
import type { ContentHandler } from "./content-handler.js";
import { RegcacheError } from "../errors.js";
import { sendFailure } from "./errors.js";
import { errorReply, writeReply } from "./reply.js";
import { passThrough } from "./pass-through.js";
import { cacheStatusHeaders, type RegistryRequest } from "./request-context.js";
import { judgeRequest } from "./request-judgement.js";
import type { TagHandler } from "./tag-handler.js";
import type { PingHandler } from "./ping-handler.js";

/**
 * Routes one intercepted request (request-judgement.ts): what is unsafe to forward is refused,
 * what is immutable goes through the cache, everything else streams through as the upstream answers it.
 */
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
    const judgement = judgeRequest(rr.req.method ?? "GET", rr.req.url ?? "/", rr.req.headers);
    rr.log.kind = judgement.kind === "blob" || judgement.kind === "manifest" || judgement.kind === "tag" || judgement.kind === "ping" ? judgement.kind : "other";
    switch (judgement.kind) {
      case "refuse":
        rr.log.cache = "BYPASS";
        writeReply(rr.res, errorReply(400, "NAME_INVALID", `refused, not forwarded: ${judgement.reason}`, cacheStatusHeaders("BYPASS")), rr.req.method);
        return;
      case "forward":
        rr.log.cache = "BYPASS";
        rr.log.forwarded = judgement.reason;
        await passThrough(this.upstream, rr);
        return;
      case "blob":
      case "manifest":
        rr.log.repository = judgement.name;
        rr.log.digest = judgement.digest.value;
        await this.content.handle(rr, judgement);
        return;
      case "tag":
        rr.log.repository = judgement.name;
        rr.log.tag = judgement.tag;
        await this.tags.handle(rr, judgement);
        return;
      case "ping":
        await this.ping.handle(rr);
        return;
    }
  }
}
