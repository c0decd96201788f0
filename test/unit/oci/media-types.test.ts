import { describe, expect, it } from "vitest";
import { describeManifest, isManifestMediaType } from "../../../src/oci/media-types.js";

const OCI = "application/vnd.oci.image.manifest.v1+json";

describe("manifest media types", () => {
  it("knows the manifest types, parameters and case aside, and nothing else", () => {
    for (const type of [OCI, "application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.v2+json", "application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.docker.distribution.manifest.v1+prettyjws", `${OCI}; charset=utf-8`, OCI.toUpperCase()]) {
      expect(isManifestMediaType(type), type).toBe(true);
    }
    for (const type of ["text/plain", "application/json", "application/octet-stream", "", undefined]) expect(isManifestMediaType(type), String(type)).toBe(false);
  });

  it("reads the type a manifest declares, and whether a document is a manifest at all", () => {
    expect(describeManifest(JSON.stringify({ schemaVersion: 2, mediaType: OCI, config: {}, layers: [] }))).toEqual({ manifest: true, declared: OCI });
    expect(describeManifest(JSON.stringify({ schemaVersion: 2, config: {}, layers: [] }))).toEqual({ manifest: true, declared: undefined });
    expect(describeManifest(JSON.stringify({ schemaVersion: 2, manifests: [] }))).toEqual({ manifest: true, declared: undefined });
    expect(describeManifest(JSON.stringify({ schemaVersion: 1, fsLayers: [], signatures: [] }))).toEqual({ manifest: true, declared: undefined });
    expect(describeManifest(JSON.stringify({ mediaType: "application/vnd.oci.artifact.manifest.v1+json", blobs: [] }))).toEqual({ manifest: true, declared: "application/vnd.oci.artifact.manifest.v1+json" });
    // A mediaType that is no manifest type declares nothing.
    expect(describeManifest(JSON.stringify({ schemaVersion: 2, mediaType: "text/plain", config: {} }))).toEqual({ manifest: true, declared: undefined });
    for (const other of [JSON.stringify({ architecture: "amd64", os: "linux", rootfs: {} }), "not json", "[1,2]", "null", "\u001f\u008b"]) {
      expect(describeManifest(other), other).toEqual({ manifest: false, declared: undefined });
    }
  });
});
