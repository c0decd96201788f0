import type { Download } from "../cache/download.js";
import type { HeldLease } from "../fleet/held-lease.js";
import { contentPath } from "../registry/content-target.js";
import type { UpstreamClient } from "../upstream/client.js";
import { upstreamRequestHeaders } from "../upstream/headers.js";
import { requestFollowingRedirects } from "../upstream/redirects.js";
import { isUnavailableStatus } from "../upstream/upstream-error.js";
import { bodyOf, continuation, continuesAt, rangeFrom, type ContentSource, type SourceAnswer, type SourceRequest } from "./content-source.js";

/** Conditional and range headers describe the client's view; the cache fetches whole, unconditional bodies (or the rest of one). */
const NOT_FORWARDED_ON_FILL = ["range", "if-range", "if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "content-length"];

/**
 * The registry itself, asked with the client's own credentials, redirects followed server-side:
 * its 200 is its word that this client may have the content. Its body is kept as the kind asked
 * for: a blob as octets, a manifest within the size limit, its Content-Type the upstream's answer
 * to this client and, for the cache, only this repository's label (content-source.ts: bodyOf).
 * `lease`: the fleet's lease on filling the digest, held until the fill is stored; `stored`: what
 * follows a fill this source began (a second copy on a peer or in the object store; it releases
 * the lease).
 */
export class UpstreamSource implements ContentSource {
  readonly via = "upstream";
  readonly name: string;

  constructor(
    private readonly upstream: UpstreamClient,
    private readonly request: SourceRequest,
    private readonly lease: HeldLease | undefined,
    private readonly stored: (download: Download, lease: HeldLease | undefined) => void,
  ) {
    this.name = `upstream ${request.rr.host}`;
  }

  async open(offset: number, size?: number): Promise<SourceAnswer | undefined> {
    const { rr, target } = this.request;
    const { response, host } = await requestFollowingRedirects(this.upstream, {
      host: rr.host,
      port: rr.port,
      method: "GET",
      path: contentPath(target),
      headers: { ...upstreamRequestHeaders(rr.req.headers, NOT_FORWARDED_ON_FILL), ...rangeFrom(offset) },
    });
    if (offset > 0) {
      if (continuesAt(response, offset, size!)) return continuation(target, response, host, size!, "MISS");
      await response.body.dump();
      return undefined;
    }
    rr.log.upstreamStatus = response.statusCode;
    if (host !== rr.host) rr.log.upstreamHost = host;
    if (response.statusCode !== 200) return { kind: "refused", refusal: { kind: "upstream", response }, unavailable: isUnavailableStatus(response.statusCode) };
    return bodyOf(target, response, host, "MISS");
  }

  settled(download: Download | undefined): void {
    if (download) this.stored(download, this.lease);
    else this.lease?.release();
  }
}
