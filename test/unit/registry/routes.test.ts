import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseRegistryPath } from "../../../src/registry/routes.js";

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

  it("says which part of a path it cannot key: the name, the digest (sha384 too) or the tag", () => {
    expect(parseRegistryPath(`/v2/UPPER/blobs/sha256:${SHA}`)).toEqual({ kind: "unkeyable", part: "name", name: "UPPER" });
    expect(parseRegistryPath(`/v2/../etc/blobs/sha256:${SHA}`)).toMatchObject({ kind: "unkeyable", part: "name" });
    expect(parseRegistryPath(`/v2//blobs/sha256:${SHA}`)).toMatchObject({ kind: "unkeyable", part: "name" });
    expect(parseRegistryPath(`/v2/${"a".repeat(256)}/manifests/latest`)).toMatchObject({ kind: "unkeyable", part: "name" });
    expect(parseRegistryPath(`/v2/a/blobs/sha256:${SHA.toUpperCase()}`)).toMatchObject({ kind: "unkeyable", part: "digest" });
    expect(parseRegistryPath("/v2/a/blobs/sha256:../../etc/passwd")).toMatchObject({ kind: "unkeyable", part: "digest" });
    expect(parseRegistryPath(`/v2/a/manifests/sha384:${"a".repeat(96)}`)).toMatchObject({ kind: "unkeyable", part: "digest" });
    expect(parseRegistryPath(`/v2/a/blobs/md5:${"a".repeat(32)}`)).toMatchObject({ kind: "unkeyable", part: "digest" });
    expect(parseRegistryPath("/v2/a/blobs/latest")).toMatchObject({ kind: "unkeyable", part: "digest" });
    expect(parseRegistryPath("/v2/a/manifests/.INVALID_MANIFEST_NAME")).toMatchObject({ kind: "unkeyable", part: "tag" });
    expect(parseRegistryPath("/v2/a/manifests/-bad")).toMatchObject({ kind: "unkeyable", part: "tag" });
    expect(parseRegistryPath(`/v2/a/manifests/${"t".repeat(129)}`)).toMatchObject({ kind: "unkeyable", part: "tag" });
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
