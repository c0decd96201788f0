import { describe, expect, it } from "vitest";
import type { BlobEntry } from "../../../src/cache/cache-index.js";
import { recordLinkType, servedType, settleLegacyType, upgradeMediaType } from "../../../src/cache/manifest-types.js";

const OCI = "application/vnd.oci.image.manifest.v1+json";
const DOCKER = "application/vnd.docker.distribution.manifest.v2+json";
const entry = (f: Partial<BlobEntry>): BlobEntry => ({ digest: `sha256:${"a".repeat(64)}`, size: 10, kind: "manifest", mediaType: "", created: 0, lastAccess: 0, hits: 0, links: [], ...f });

describe("a manifest's media type", () => {
  it("is the declared type in every repository; without one, the label of each repository, served only there", () => {
    expect(servedType(entry({ mediaType: OCI, linkTypes: { "b.test/x": DOCKER } }), "b.test/x")).toBe(OCI);
    const undeclared = entry({ links: ["a.test/x", "b.test/x"], linkTypes: { "a.test/x": OCI, "b.test/x": DOCKER } });
    expect(servedType(undeclared, "a.test/x")).toBe(OCI);
    expect(servedType(undeclared, "b.test/x")).toBe(DOCKER);
    expect(servedType(undeclared, "c.test/x")).toBeUndefined();
    expect(servedType(entry({ kind: "blob", mediaType: "application/octet-stream" }), "c.test/x")).toBe("application/octet-stream");
  });

  it("keeps a label only for a linked repository of a manifest that declares no type, and only a manifest type", () => {
    const undeclared = entry({ links: ["a.test/x"] });
    expect(recordLinkType(undeclared, "a.test/x", "text/plain")).toBe(false);
    expect(recordLinkType(undeclared, "b.test/x", DOCKER)).toBe(false);
    expect(recordLinkType(undeclared, "a.test/x", DOCKER)).toBe(true);
    expect(recordLinkType(undeclared, "a.test/x", DOCKER)).toBe(false);
    expect(undeclared.linkTypes).toEqual({ "a.test/x": DOCKER });
    const declared = entry({ mediaType: OCI, links: ["a.test/x"] });
    expect(recordLinkType(declared, "a.test/x", DOCKER)).toBe(false);
    expect(declared.linkTypes).toBeUndefined();
  });

  it("drops the labels of repositories no longer linked when it records one", () => {
    const e = entry({ links: ["b.test/x"], linkTypes: { "a.test/x": OCI } });
    recordLinkType(e, "b.test/x", DOCKER);
    expect(e.linkTypes).toEqual({ "b.test/x": DOCKER });
  });

  it("upgrades a schema 2 row: a blob stays one; a manifest's Content-Type waits aside for the manifest to be read", () => {
    const blob = entry({ kind: undefined as never, mediaType: "application/octet-stream" });
    upgradeMediaType(blob);
    expect(blob).toMatchObject({ kind: "blob", mediaType: "application/octet-stream" });
    const manifest = entry({ kind: undefined as never, mediaType: "text/plain", links: ["a.test/x", "b.test/x"] });
    upgradeMediaType(manifest);
    expect(manifest).toMatchObject({ kind: "manifest", mediaType: "", legacyMediaType: "text/plain" });
  });

  it("settles a legacy row: the declared type wins; without one, the old label serves the repository that cached it, if a manifest type", () => {
    const declared = entry({ legacyMediaType: DOCKER, links: ["a.test/x", "b.test/x"] });
    settleLegacyType(declared, OCI);
    expect(declared).toMatchObject({ mediaType: OCI });
    expect(declared).not.toHaveProperty("legacyMediaType");
    const labelled = entry({ legacyMediaType: DOCKER, links: ["a.test/x", "b.test/x"] });
    settleLegacyType(labelled, undefined);
    expect(labelled.linkTypes).toEqual({ "a.test/x": DOCKER });
    const poisoned = entry({ legacyMediaType: "text/plain", links: ["a.test/x"] });
    settleLegacyType(poisoned, undefined);
    expect(poisoned).toMatchObject({ mediaType: "" });
    expect(poisoned.linkTypes).toBeUndefined();
  });
});
