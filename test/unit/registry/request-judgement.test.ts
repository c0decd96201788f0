import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { judgeRequest, unsafePathReason } from "../../../src/registry/request-judgement.js";

const SHA = "a".repeat(64);
const blob = `/v2/team/app/blobs/sha256:${SHA}`;
const judge = (url: string, headers: Record<string, string> = {}, method = "GET") => judgeRequest(method, url, headers);

describe("judgeRequest: refused, only what is unsafe to forward, with the reason", () => {
  it("refuses dot segments, encoded dots, slashes and backslashes, and control characters, raw or encoded", () => {
    const cases: [string, RegExp][] = [
      ["/v2/../etc/passwd", /dot segment/],
      ["/v2/team/./app/manifests/v1", /dot segment/],
      ["/v2/team/app/manifests/sha256:../../x", /dot segment/],
      ["/v2/team/app/blobs/sha256:%2e%2e", /encoded dot/],
      ["/v2/team%2Fapp/manifests/v1", /encoded slash/],
      ["/v2/team\\app/manifests/v1", /backslash/],
      ["/v2/team%5capp/manifests/v1", /backslash/],
      [`${blob}%00`, /control character/],
      ["/v2/team/app/manifests/v1%0a", /control character/],
      ["/v2/team/app/manifests/v1\x7f", /control character/],
    ];
    for (const [url, reason] of cases) {
      const judgement = judge(url);
      expect(judgement.kind, url).toBe("refuse");
      expect(judgement.kind === "refuse" && judgement.reason, url).toMatch(reason);
    }
  });

  it("refuses a repository name over 255 characters, saying how long it is", () => {
    expect(judge(`/v2/${"n".repeat(300)}/manifests/latest`)).toEqual({ kind: "refuse", reason: "the repository name is 300 characters long, over the 255 the distribution spec allows" });
  });

  it("leaves the query alone: it is the upstream's to read", () => {
    expect(unsafePathReason("/v2/team/app/tags/list?n=10&last=..")).toBeUndefined();
    expect(judge("/v2/team/app/tags/list?last=%2e%2e")).toEqual({ kind: "forward", reason: "not-a-read" });
  });
});

describe("judgeRequest: forwarded, whatever regcache cannot judge", () => {
  it("forwards names, digests and tags outside the grammar, as the registry answers them (distribution: 404 to .INVALID_MANIFEST_NAME)", () => {
    expect(judge("/v2/team/app/manifests/.INVALID_MANIFEST_NAME")).toEqual({ kind: "forward", reason: "unkeyable-tag" });
    expect(judge(`/v2/team/app/manifests/sha384:${"a".repeat(96)}`)).toEqual({ kind: "forward", reason: "unkeyable-digest" });
    expect(judge("/v2/team/app/blobs/sha256:abc")).toEqual({ kind: "forward", reason: "unkeyable-digest" });
    expect(judge(`/v2/Team/app/blobs/sha256:${SHA}`)).toEqual({ kind: "forward", reason: "unkeyable-name" });
    expect(judge(`/v2/team//app/blobs/sha256:${SHA}`)).toEqual({ kind: "forward", reason: "unkeyable-name" });
  });

  it("forwards writes, bodies, queries and everything that is not a blob, manifest or tag", () => {
    expect(judge(blob, {}, "DELETE")).toEqual({ kind: "forward", reason: "body-or-query" });
    expect(judge(blob, { "content-length": "1" })).toEqual({ kind: "forward", reason: "body-or-query" });
    expect(judge(blob, { "transfer-encoding": "chunked" }, "HEAD")).toEqual({ kind: "forward", reason: "body-or-query" });
    expect(judge(`${blob}?ns=docker.io`)).toEqual({ kind: "forward", reason: "body-or-query" });
    expect(judge("/v2/team/app/blobs/uploads/", {}, "POST")).toEqual({ kind: "forward", reason: "not-a-read" });
    expect(judge("/v2/_catalog")).toEqual({ kind: "forward", reason: "not-a-read" });
    expect(judge("/v2/", {}, "POST")).toEqual({ kind: "forward", reason: "not-a-read" });
  });

  it("forwards conditional requests and Ranges it does not answer itself (several, another unit, invalid, on a manifest)", () => {
    for (const name of ["if-none-match", "if-match", "if-modified-since", "if-unmodified-since"]) {
      expect(judge(blob, { [name]: `"sha256:${SHA}"` }), name).toEqual({ kind: "forward", reason: "conditional" });
      expect(judge("/v2/team/app/manifests/v1", { [name]: "x" }), name).toEqual({ kind: "forward", reason: "conditional" });
    }
    for (const range of ["bytes=0-4,10-14", "items=0-5", "bytes=5-2", "bytes=abc", "bytes = 0-1", "bytes=-"]) expect(judge(blob, { range }), range).toEqual({ kind: "forward", reason: "range" });
    expect(judge("/v2/team/app/manifests/v1", { range: "bytes=0-9" })).toEqual({ kind: "forward", reason: "range" });
    expect(judge(`/v2/team/app/manifests/sha256:${SHA}`, { range: "bytes=0-9" })).toEqual({ kind: "forward", reason: "range" });
  });
});

describe("judgeRequest: answered through the cache", () => {
  it("takes plain reads of blobs (one byte range included), manifests by digest, tags and the ping", () => {
    expect(judge(blob)).toMatchObject({ kind: "blob", name: "team/app", digest: { value: `sha256:${SHA}` } });
    for (const range of ["bytes=0-9", "bytes=10-", "bytes=-5"]) expect(judge(blob, { range }, "HEAD"), range).toMatchObject({ kind: "blob" });
    expect(judge(blob, { "if-range": '"x"', range: "bytes=0-9" })).toMatchObject({ kind: "blob" });
    expect(judge(`/v2/team/app/manifests/sha256:${SHA}`)).toMatchObject({ kind: "manifest" });
    expect(judge("/v2/team/app/manifests/v1", {}, "HEAD")).toEqual({ kind: "tag", name: "team/app", tag: "v1" });
    expect(judge("/v2/")).toEqual({ kind: "ping" });
    expect(judge("/v2/?x=1")).toEqual({ kind: "ping" });
  });

  it("never hands the cache a path with a dot segment, an encoded separator or a control character (property)", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (tail) => {
        const judgement = judge(`/v2/${tail}`);
        if (judgement.kind === "blob" || judgement.kind === "manifest" || judgement.kind === "tag") {
          expect(judgement.name).not.toMatch(/\.\.|\/\/|%|\\|[\0-\x1f]/);
          expect(judgement.name.length).toBeLessThanOrEqual(255);
        }
      }),
      { numRuns: 5000 },
    );
  });
});
