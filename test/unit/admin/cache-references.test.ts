import { describe, expect, it } from "vitest";
import { formatTaggedImage, manifestReferences, parseTaggedImage } from "../../../src/admin/cache-references.js";
import { parseTagKey, tagKey } from "../../../src/cache/cache-index.js";

const d = (c: string): string => `sha256:${c.repeat(64)}`;

describe("manifestReferences", () => {
  it("an image manifest names its config and layers", () => {
    const manifest = { schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config: { digest: d("a") }, layers: [{ digest: d("b") }, { digest: d("c") }], subject: { digest: d("f") } };
    expect(manifestReferences(manifest)).toEqual({ manifests: [], blobs: [d("a"), d("b"), d("c")] });
  });

  it("an index or Docker manifest list names its manifests", () => {
    const list = { schemaVersion: 2, mediaType: "application/vnd.docker.distribution.manifest.list.v2+json", manifests: [{ digest: d("1"), platform: { os: "linux" } }, { digest: d("2") }] };
    expect(manifestReferences(list)).toEqual({ manifests: [d("1"), d("2")], blobs: [] });
  });

  it("leaves out anything that is not a valid digest: they become file paths", () => {
    const hostile = { config: { digest: "sha256:../../etc/passwd" }, layers: [{ digest: d("A") }, { digest: 42 }, null, "x", { digest: d("b") }], manifests: "no" };
    expect(manifestReferences(hostile)).toEqual({ manifests: [], blobs: [d("b")] });
  });

  it.each([null, 7, "text", [], { layers: {} }])("names nothing in %j", (doc) => {
    expect(manifestReferences(doc)).toEqual({ manifests: [], blobs: [] });
  });
});

describe("parseTaggedImage (the image `cache rm` names)", () => {
  it.each([
    ["quay.test/team/app:v1", "quay.test/team/app:v1"],
    ["quay.test:5000/team/app:v1", "quay.test/team/app:v1"],
    ["localhost/app", "localhost/app:latest"],
    ["alpine", "registry-1.docker.io/library/alpine:latest"],
    ["docker.io/library/alpine:3.19", "registry-1.docker.io/library/alpine:3.19"],
    ["registry-1.docker.io/bitnami/redis:7.2", "registry-1.docker.io/bitnami/redis:7.2"],
  ])("%s is %s", (input, expected) => {
    expect(formatTaggedImage(parseTaggedImage(input))).toBe(expected);
  });

  it("refuses a digest reference and malformed names", () => {
    expect(() => parseTaggedImage(`quay.test/team/app@${d("a")}`)).toThrow(/name a tag; to remove one digest, give the digest alone/);
    expect(() => parseTaggedImage("quay.test/Team/App:v1")).toThrow(/invalid repository name/);
    expect(() => parseTaggedImage("quay.test/team/app:bad tag")).toThrow(/invalid/);
  });
});

describe("parseTagKey", () => {
  it.each([
    ["quay.test", "team/app", "v1"],
    ["registry-1.docker.io", "library/alpine", "3.19.1-r0"],
    ["localhost", "a/b/c", "latest"],
  ])("reads back what tagKey made of %s/%s:%s", (host, name, tag) => {
    for (const accept of [["*"], ["application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json"], []]) {
      expect(parseTagKey(tagKey(host, name, tag, accept))).toEqual({ host, name, tag });
    }
  });

  it.each(["", "@abc", "quay.test@abc", "quay.test/app@abc", "quay.test/app:@abc", "/app:v1@abc", "quay.test/:v1@abc", "quay.test/a:b/c@abc"])("%j is no tag key", (key) => {
    expect(parseTagKey(key)).toBeUndefined();
  });
});
