import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { parseDigest } from "../../../src/oci/digest.js";
import { contentReply } from "../../../src/registry/content-reply.js";

const digest = parseDigest(`sha256:${"a".repeat(64)}`)!;
const open = (): Readable => Readable.from([]);
const rep = (size: number | undefined) => ({ digest, mediaType: "application/octet-stream", size });

describe("contentReply", () => {
  it("answers a whole representation with its digest, length and cache status, opened as bytes 0 to size-1", () => {
    const reply = contentReply(rep(1000), "HIT", undefined, open);
    expect(reply.status).toBe(200);
    expect(reply.headers).toMatchObject({ "docker-content-digest": digest.value, etag: `"${digest.value}"`, "content-length": 1000, "accept-ranges": "bytes", "x-cache": "HIT", "docker-distribution-api-version": "registry/2.0" });
    expect(reply.body).toMatchObject({ kind: "range", start: 0, end: 999 });
  });

  it("answers a satisfiable range with 206 and Content-Range, and one past the end with 416", () => {
    const ranged = contentReply(rep(1000), "MISS", "bytes=100-199", open);
    expect(ranged.status).toBe(206);
    expect(ranged.headers).toMatchObject({ "content-range": "bytes 100-199/1000", "content-length": 100 });
    expect(ranged.body).toMatchObject({ kind: "range", start: 100, end: 199 });
    const beyond = contentReply(rep(1000), "HIT", "bytes=1000-", open);
    expect(beyond.status).toBe(416);
    expect(beyond.headers["content-range"]).toBe("bytes */1000");
    expect(beyond.body.kind).toBe("text");
  });

  it("sends the whole body, without a length, when the size is unknown or the body streams through", () => {
    const unknown = contentReply(rep(undefined), "MISS", "bytes=0-9", open);
    expect(unknown.status).toBe(200);
    expect(unknown.headers["content-length"]).toBeUndefined();
    expect(unknown.headers["accept-ranges"]).toBeUndefined();
    const through = contentReply(rep(1000), "BYPASS", "bytes=0-9", open, { wholeOnly: true });
    expect(through.status).toBe(200);
    expect(through.headers["content-length"]).toBe(1000);
  });

  it("lets extra headers (a stale warning) through", () => {
    expect(contentReply(rep(10), "STALE", undefined, open, { extraHeaders: { warning: '110 - "Response is stale"' } }).headers.warning).toBe('110 - "Response is stale"');
  });
});
