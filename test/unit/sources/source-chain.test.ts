import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import type { Download } from "../../../src/cache/download.js";
import { createLogger } from "../../../src/log/logger.js";
import type { ContentSource, ContentVia, SourceAnswer } from "../../../src/sources/content-source.js";
import { SourceChain } from "../../../src/sources/source-chain.js";
import type { UpstreamResponse } from "../../../src/upstream/client.js";
import { UpstreamError } from "../../../src/upstream/upstream-error.js";

const BYTES = randomBytes(50_000);

/** Bytes [from, to) of BYTES; then the end, or (failing) an error. */
function bytes(from: number, to: number, failing = false): Readable {
  return Readable.from(
    (async function* () {
      if (to > from) yield BYTES.subarray(from, to);
      if (failing) throw new Error(`cut at ${to}`);
    })(),
  );
}

/** An upstream answer with `status` whose body records being drained. */
function response(status: number): UpstreamResponse & { dumped: boolean } {
  const r = { statusCode: status, headers: {}, dumped: false, body: { dump: async () => void (r.dumped = true) } };
  return r as unknown as UpstreamResponse & { dumped: boolean };
}

/** A source answering as `answer` says; records each offset it was asked for and what it was told when the fill settled. */
class FakeSource implements ContentSource {
  readonly asked: number[] = [];
  settledWith: Download | undefined | "not told" = "not told";
  constructor(
    readonly via: ContentVia,
    private readonly answer: (offset: number) => Promise<SourceAnswer | undefined>,
  ) {}
  get name(): string {
    return this.via;
  }
  open(offset: number): Promise<SourceAnswer | undefined> {
    this.asked.push(offset);
    return this.answer(offset);
  }
  settled(download: Download | undefined): void {
    this.settledWith = download;
  }
}

const body = (stream: Readable, size: number | undefined): SourceAnswer => ({ kind: "body", content: "blob", body: stream, size, mediaType: "application/octet-stream", host: "quay.test", cache: "MISS" });
const refused = (status: number, unavailable: boolean) => {
  const upstream = response(status);
  return { kind: "refused" as const, refusal: { kind: "upstream" as const, response: upstream }, unavailable, upstream };
};
const chain = (...sources: ContentSource[]) => new SourceChain(sources, { digest: "sha256:abc", host: "quay.test" }, createLogger("silent"));

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe("SourceChain", () => {
  it("the first source with the content serves it: one without it, one unreachable, one that cannot serve now pass to the next", async () => {
    const busy = refused(503, true);
    const sources = [
      new FakeSource("store", async () => undefined),
      new FakeSource("owner", async () => Promise.reject(new Error("unreachable"))),
      new FakeSource("holder", async () => busy),
      new FakeSource("upstream", async () => body(bytes(0, BYTES.length), BYTES.length)),
      new FakeSource("copy", async () => body(bytes(0, BYTES.length), BYTES.length)),
    ];
    const answer = await chain(...sources).open();
    expect(answer.kind).toBe("body");
    if (answer.kind !== "body") return;
    expect(answer.source).toBe(sources[3]);
    expect((await readAll(answer.body)).equals(BYTES)).toBe(true);
    expect(sources[4]!.asked).toEqual([]);
    expect(busy.upstream.dumped).toBe(true);
  });

  it("a refusal that concerns the client ends the chain", async () => {
    const denied = refused(401, false);
    const after = new FakeSource("copy", async () => body(bytes(0, BYTES.length), BYTES.length));
    expect(await chain(new FakeSource("upstream", async () => denied), after).open()).toBe(denied);
    expect(after.asked).toEqual([]);
  });

  it("when none serves: upstream's answer that it cannot serve, else upstream's failure; an address the policy refuses ends it at once", async () => {
    const upstream503 = refused(503, true);
    const peerBusy = refused(503, true);
    expect(await chain(new FakeSource("owner", async () => peerBusy), new FakeSource("upstream", async () => upstream503), new FakeSource("copy", async () => undefined)).open()).toBe(upstream503);
    expect(peerBusy.upstream.dumped).toBe(true);

    const down = new UpstreamError("connect", "quay.test", "connection refused");
    await expect(chain(new FakeSource("owner", async () => Promise.reject(new Error("peer down"))), new FakeSource("upstream", async () => Promise.reject(down)), new FakeSource("copy", async () => undefined)).open()).rejects.toBe(down);
    await expect(chain(new FakeSource("copy", async () => undefined)).open()).rejects.toThrow(/no source holds this content/);

    const refusedAddress = new UpstreamError("refused-address", "quay.test", "private address");
    const after = new FakeSource("copy", async () => body(bytes(0, BYTES.length), BYTES.length));
    await expect(chain(new FakeSource("upstream", async () => Promise.reject(refusedAddress)), after).open()).rejects.toBe(refusedAddress);
    expect(after.asked).toEqual([]);
  });

  it("a source failing mid-stream is continued by the next ones that can, from the offset reached: one whole body", async () => {
    const store = new FakeSource("store", async () => body(bytes(0, 20_000, true), BYTES.length));
    const unreachable = new FakeSource("copy", async () => Promise.reject(new Error("peer down")));
    const peer = new FakeSource("copy", async (offset) => body(bytes(offset, 35_000, true), BYTES.length));
    const notRanged = new FakeSource("copy", async () => body(bytes(0, BYTES.length), BYTES.length + 1));
    const upstream = new FakeSource("upstream", async (offset) => body(bytes(offset, BYTES.length), BYTES.length));
    const answer = await chain(store, unreachable, peer, notRanged, upstream).open();
    if (answer.kind !== "body") throw new Error("no body");
    expect((await readAll(answer.body)).equals(BYTES)).toBe(true);
    expect([store.asked, unreachable.asked, peer.asked, notRanged.asked, upstream.asked]).toEqual([[0], [20_000], [20_000], [35_000], [35_000]]);
  });

  it("a body of undeclared size, or from the last source, is handed on as it is: nothing could continue it", async () => {
    const stream = bytes(0, BYTES.length);
    const answer = await chain(new FakeSource("upstream", async () => body(stream, undefined)), new FakeSource("copy", async () => undefined)).open();
    expect(answer.kind === "body" && answer.body).toBe(stream);
    const last = bytes(0, BYTES.length);
    const only = await chain(new FakeSource("upstream", async () => body(last, BYTES.length))).open();
    expect(only.kind === "body" && only.body).toBe(last);
  });

  it("tells the source that began the fill its download, and the others that none came of them", async () => {
    const sources = [new FakeSource("store", async () => undefined), new FakeSource("upstream", async () => body(bytes(0, BYTES.length), BYTES.length)), new FakeSource("copy", async () => undefined)];
    const c = chain(...sources);
    await c.open();
    const download = {} as Download;
    c.settle(download);
    expect(sources.map((s) => s.settledWith)).toEqual([undefined, download, undefined]);
  });
});
