import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { parseDigest } from "../../../src/oci/digest.js";
import { contentReply } from "../../../src/registry/content-reply.js";

const digest = parseDigest(`sha256:${"a".repeat(64)}`)!;
const open = (): Readable => Readable.from([]);
const rep = (size: number | undefined, kind: "blob" | "manifest" = "blob") => ({ kind, digest, mediaType: kind === "blob" ? "application/octet-stream" : "application/vnd.oci.image.manifest.v1+json", size });
const whole = { kind: "whole" } as const;

describe("contentReply", () => {
  it("answers a whole representation with its type, digest, length and cache status, opened as bytes 0 to size-1", () => {
    const reply = contentReply(rep(1000), "HIT", whole, open);
    expect(reply.status).toBe(200);
    expect(reply.headers).toMatchObject({ "content-type": "application/octet-stream", "docker-content-digest": digest.value, etag: `"${digest.value}"`, "content-length": 1000, "accept-ranges": "bytes", "x-cache": "HIT", "docker-distribution-api-version": "registry/2.0" });
    expect(reply.body).toMatchObject({ kind: "range", start: 0, end: 999 });
  });

  it("answers a planned range of a blob with 206 and Content-Range", () => {
    const ranged = contentReply(rep(1000), "MISS", { kind: "range", range: { start: 100, end: 199 } }, open);
    expect(ranged.status).toBe(206);
    expect(ranged.headers).toMatchObject({ "content-range": "bytes 100-199/1000", "content-length": 100 });
    expect(ranged.body).toMatchObject({ kind: "range", start: 100, end: 199 });
  });

  it("answers a manifest whole, without Accept-Ranges, as distribution does", () => {
    const reply = contentReply(rep(300, "manifest"), "HIT", { kind: "range", range: { start: 0, end: 9 } }, open);
    expect(reply.status).toBe(200);
    expect(reply.headers["content-length"]).toBe(300);
    expect(reply.headers["content-type"]).toBe("application/vnd.oci.image.manifest.v1+json");
    expect(reply.headers["accept-ranges"]).toBeUndefined();
  });

  it("sends the whole body, without a length, when the size is unknown", () => {
    const unknown = contentReply(rep(undefined), "MISS", whole, open);
    expect(unknown.status).toBe(200);
    expect(unknown.headers["content-length"]).toBeUndefined();
    expect(unknown.headers["accept-ranges"]).toBeUndefined();
  });

  it("lets extra headers (a stale warning) through", () => {
    expect(contentReply(rep(10), "STALE", whole, open, { warning: '110 - "Response is stale"' }).headers.warning).toBe('110 - "Response is stale"');
  });
});
