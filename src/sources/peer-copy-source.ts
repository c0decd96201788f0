import type { Cluster } from "../cluster/cluster.js";
import type { OfflineRule } from "../registry/access-control.js";
import { headerValue } from "../upstream/headers.js";
import { bodyOf, continuation, continuesAt, peerRequest, rangeFrom, type ContentSource, type SourceAnswer, type SourceRequest } from "./content-source.js";

export interface CopyOptions {
  /** Keeps what the peer knows: when it last found the repository public (it travels with the copy). */
  adoptVerdict(publicSince: number): Promise<void>;
  /**
   * Present when the client's access was left to upstream (nothing here is known to be in the
   * repository): a copy then reaches the client only as the offline policy allows.
   */
  offline?: OfflineRule;
}

/**
 * A copy of what one peer holds for the repository (it answers 404 for content it holds only for
 * others, or a manifest whose type there it does not know): nothing is fetched on its side. It is
 * kept as the kind asked for, a manifest with the type the peer serves it as in this repository,
 * kept here as this repository's label. The peer hashes what it sends and cuts a response that
 * does not match; this replica verifies the bytes again as it stores them.
 */
export class PeerCopySource implements ContentSource {
  readonly via = "copy";
  readonly name: string;

  constructor(
    private readonly cluster: Cluster,
    private readonly request: SourceRequest,
    private readonly peer: string,
    private readonly options: CopyOptions,
  ) {
    this.name = `peer ${peer}`;
  }

  async open(offset: number, size?: number): Promise<SourceAnswer | undefined> {
    const response = await this.cluster.copyFrom(this.peer, peerRequest(this.request, rangeFrom(offset)));
    if (!response) return undefined;
    if (offset > 0 && continuesAt(response, offset, size!)) return continuation(this.request.target, response, this.request.rr.host, size!, "PEER");
    if (offset > 0 || response.statusCode !== 200) {
      await response.body.dump();
      return undefined;
    }
    const publicSince = Number(headerValue(response.headers["x-regcache-public-since"])) || undefined;
    if (publicSince) await this.options.adoptVerdict(publicSince);
    const decision = await this.options.offline?.judge(publicSince);
    if (decision && !decision.allowed) {
      response.body.destroy();
      return { kind: "refused", refusal: { kind: "access", decision }, unavailable: false };
    }
    return bodyOf(this.request.target, response, this.request.rr.host, "PEER");
  }
}
