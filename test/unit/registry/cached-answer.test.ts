import { describe, expect, it } from "vitest";
import { cachedAnswer } from "../../../src/registry/cached-answer.js";

const OCI = "application/vnd.oci.image.manifest.v1+json";
const DOCKER = "application/vnd.docker.distribution.manifest.v2+json";

describe("cachedAnswer: whether the cache answers as the registry would", () => {
  it("serves a blob as a blob, and forwards a digest asked for as the other kind", () => {
    const blob = { kind: "blob" as const, mediaType: "application/octet-stream" };
    expect(cachedAnswer("blob", blob, "a.test/x", [])).toEqual({ kind: "serve", mediaType: "application/octet-stream" });
    expect(cachedAnswer("manifest", blob, "a.test/x", [OCI])).toEqual({ kind: "forward", reason: "kind" });
    expect(cachedAnswer("blob", { kind: "manifest", mediaType: OCI }, "a.test/x", [])).toEqual({ kind: "forward", reason: "kind" });
  });

  it("serves a manifest only to an Accept that names its type in this repository", () => {
    const declared = { kind: "manifest" as const, mediaType: OCI };
    expect(cachedAnswer("manifest", declared, "a.test/x", [DOCKER, OCI, "*/*"])).toEqual({ kind: "serve", mediaType: OCI });
    for (const accept of [[], ["*/*"], ["application/*"], [DOCKER]]) expect(cachedAnswer("manifest", declared, "a.test/x", accept), accept.join()).toEqual({ kind: "forward", reason: "accept", mediaType: OCI });
    const undeclared = { kind: "manifest" as const, mediaType: "", linkTypes: { "b.test/x": DOCKER } };
    expect(cachedAnswer("manifest", undeclared, "b.test/x", [DOCKER])).toEqual({ kind: "serve", mediaType: DOCKER });
    expect(cachedAnswer("manifest", undeclared, "a.test/x", [DOCKER, OCI])).toEqual({ kind: "forward", reason: "media-type" });
  });
});
