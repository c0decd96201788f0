import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isCleanPath, parseRegistryPath } from "../../../src/registry/routes.js";

const SHA = "a".repeat(64);

describe("parseRegistryPath", () => {
  it("recognises the ping", () => {
    expect(parseRegistryPath("/v2/")).toEqual({ kind: "ping" });
    expect(parseRegistryPath("/v2")).toEqual({ kind: "ping" });
  });

  it("parses blobs, manifests by digest and tags", () => {
    expect(parseRegistryPath(`/v2/library/alpine/blobs/sha256:${SHA}`)).toMatchObject({ kind: "blob", name: "library/alpine", digest: { algorithm: "sha256", hex: SHA } });
    expect(parseRegistryPath(`/v2/a/manifests/sha512:${"b".repeat(128)}`)).toMatchObject({ kind: "manifest", name: "a", digest: { algorithm: "sha512" } });
    expect(parseRegistryPath("/v2/library/alpine/manifests/3.20")).toEqual({ kind: "tag", name: "library/alpine", tag: "3.20" });
  });

  it("splits on the last /blobs/ or /manifests/, since names may contain them", () => {
    expect(parseRegistryPath(`/v2/team/blobs/blobs/sha256:${SHA}`)).toMatchObject({ kind: "blob", name: "team/blobs" });
    expect(parseRegistryPath("/v2/x/manifests/y/manifests/latest")).toEqual({ kind: "tag", name: "x/manifests/y", tag: "latest" });
    expect(parseRegistryPath(`/v2/a/manifests/b/blobs/sha256:${SHA}`)).toMatchObject({ kind: "blob", name: "a/manifests/b" });
  });

  it("leaves uploads, catalog, tag lists and other paths alone", () => {
    expect(parseRegistryPath("/v2/a/blobs/uploads/")).toEqual({ kind: "other" });
    expect(parseRegistryPath("/v2/a/blobs/uploads/123-abc")).toEqual({ kind: "other" });
    expect(parseRegistryPath("/v2/_catalog")).toEqual({ kind: "other" });
    expect(parseRegistryPath("/v2/a/tags/list")).toEqual({ kind: "other" });
    expect(parseRegistryPath("/token")).toEqual({ kind: "other" });
  });

  it("rejects invalid names, digests and tags", () => {
    expect(parseRegistryPath(`/v2/UPPER/blobs/sha256:${SHA}`)).toMatchObject({ kind: "invalid", code: "NAME_INVALID" });
    expect(parseRegistryPath(`/v2/../etc/blobs/sha256:${SHA}`)).toMatchObject({ kind: "invalid", code: "NAME_INVALID" });
    expect(parseRegistryPath(`/v2//blobs/sha256:${SHA}`)).toMatchObject({ kind: "invalid", code: "NAME_INVALID" });
    expect(parseRegistryPath(`/v2/a/blobs/sha256:${SHA.toUpperCase()}`)).toMatchObject({ kind: "invalid", code: "DIGEST_INVALID" });
    expect(parseRegistryPath("/v2/a/blobs/sha256:../../etc/passwd")).toMatchObject({ kind: "invalid", code: "DIGEST_INVALID" });
    expect(parseRegistryPath(`/v2/a/blobs/md5:${"a".repeat(32)}`)).toMatchObject({ kind: "invalid", code: "DIGEST_INVALID" });
    expect(parseRegistryPath("/v2/a/blobs/latest")).toMatchObject({ kind: "invalid", code: "DIGEST_INVALID" });
    expect(parseRegistryPath("/v2/a/manifests/-bad")).toMatchObject({ kind: "invalid", code: "TAG_INVALID" });
    expect(parseRegistryPath(`/v2/a/manifests/${"t".repeat(129)}`)).toMatchObject({ kind: "invalid", code: "TAG_INVALID" });
    expect(parseRegistryPath(`/v2/${"a".repeat(256)}/manifests/latest`)).toMatchObject({ kind: "invalid", code: "NAME_INVALID" });
  });

  it("never yields a cache key whose digest hex is not exactly lowercase hex (property)", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (tail) => {
        const route = parseRegistryPath(`/v2/${tail}`);
        if (route.kind === "blob" || route.kind === "manifest") {
          expect(route.digest.hex).toMatch(/^[0-9a-f]{64}$|^[0-9a-f]{128}$/);
          expect(route.name).not.toMatch(/\.\.|\/\/|^\/|\/$/);
        }
      }),
      { numRuns: 5000 },
    );
  });
});

describe("isCleanPath", () => {
  it("refuses dot segments, encoded dots and slashes, backslashes and NUL", () => {
    expect(isCleanPath(`/v2/a/blobs/sha256:${SHA}`)).toBe(true);
    expect(isCleanPath("/v2/a/tags/list?n=10&last=..")).toBe(true);
    for (const bad of ["/v2/../etc", "/v2/a/./b", "/v2/a/..", "/v2/%2e%2e/x", "/v2/a%2Fb/manifests/x", "/v2/a\\b", "/v2/a%00", "/v2/a\0"]) {
      expect(isCleanPath(bad), bad).toBe(false);
    }
  });
});
