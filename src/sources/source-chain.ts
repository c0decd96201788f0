import type { Readable } from "node:stream";
import type { Download } from "../cache/download.js";
import type { Logger } from "../log/logger.js";
import { UpstreamError } from "../upstream/upstream-error.js";
import type { ContentSource, SourceBody, SourceRefusal } from "./content-source.js";
import { ResumableBody } from "./resumable-body.js";

/** What a chain gives a fill: the first body, read on from the next sources when one fails, with the source that began it. */
export type ChainBody = SourceBody & { source: ContentSource };

/**
 * The sources a fill may read a digest from, in order (registry/content-sources.ts builds them,
 * once the client's access is decided): the first that has the content serves it. A source that
 * does not hold it, cannot be reached, or says it cannot serve now (a 5xx, a 429) passes to the
 * next; a refusal that concerns the client (401, 403, 404) ends the chain, as upstream's answer
 * to this client. When a source fails mid-stream, the next ones are asked for the rest with a
 * Range request (ResumableBody), so the client sees one response.
 */
export class SourceChain {
  /** The source whose bytes the body reads now. */
  private serving = -1;
  private began: ContentSource | undefined;

  constructor(
    private readonly sources: readonly ContentSource[],
    /** For the log: the digest and where it is wanted. */
    private readonly what: Record<string, string>,
    private readonly logger: Logger,
  ) {}

  /** The first source's body, its refusal, or (none answering) the most telling failure: upstream's if it was asked. */
  async open(): Promise<ChainBody | SourceRefusal> {
    let unavailable: SourceRefusal | undefined;
    let failure: unknown;
    for (const [i, source] of this.sources.entries()) {
      let answer;
      try {
        answer = await source.open(0);
      } catch (err) {
        // An address the policy refuses to dial is a refusal of the request, not an outage.
        if (err instanceof UpstreamError && err.failure === "refused-address") throw err;
        if (failure === undefined || source.via === "upstream") failure = err;
        continue;
      }
      if (answer && (answer.kind === "body" || !answer.unavailable)) await drain(unavailable);
      if (answer?.kind === "body") {
        this.serving = i;
        this.began = source;
        const resumable = answer.size !== undefined && i < this.sources.length - 1;
        return { ...answer, body: resumable ? new ResumableBody(answer.body, answer.size!, (offset, cause) => this.continueFrom(offset, answer.size!, cause)) : answer.body, source };
      }
      if (answer && !answer.unavailable) return answer;
      if (answer && (!unavailable || source.via === "upstream")) {
        await drain(unavailable);
        unavailable = answer;
      } else {
        await drain(answer);
      }
    }
    if (unavailable) return unavailable;
    throw failure ?? new UpstreamError("connect", this.what.host ?? "", "no source holds this content");
  }

  /** Tells every source how the fill went: the one that began it gets the download. */
  settle(download: Download | undefined): void {
    for (const source of this.sources) source.settled?.(source === this.began ? download : undefined);
  }

  /** The rest of the content from `offset`, from the first source after the failed one that can give it. */
  private async continueFrom(offset: number, size: number, cause: Error): Promise<Readable | undefined> {
    const failed = this.sources[this.serving]!;
    this.logger.warn({ ...this.what, source: failed.name, offset, bytes: size, err: cause.message }, "a source failed mid-stream; asking the next for the rest");
    for (let i = this.serving + 1; i < this.sources.length; i++) {
      const source = this.sources[i]!;
      const answer = await source.open(offset, size).catch(() => undefined);
      if (answer?.kind === "body" && answer.size === size) {
        this.serving = i;
        this.logger.info({ ...this.what, source: source.name, offset }, "the fill continues from the next source");
        return answer.body;
      }
      if (answer?.kind === "body") answer.body.destroy();
      else await drain(answer);
    }
    this.logger.warn({ ...this.what, offset, bytes: size }, "no source can continue the fill; it fails");
    return undefined;
  }
}

/** A refusal passed over: its body is read to the end, so that its connection can be used again. */
async function drain(answer: SourceRefusal | undefined): Promise<void> {
  if (answer?.refusal.kind === "upstream") await answer.refusal.response.body.dump().catch(() => undefined);
}
