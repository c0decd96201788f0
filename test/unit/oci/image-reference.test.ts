import { describe, expect, it } from "vitest";
import { ImageReferenceError, parseImageReference } from "../../../src/oci/image-reference.js";

const D = `sha256:${"c".repeat(64)}`;

describe("parseImageReference", () => {
  it.each([
    ["nginx", "registry-1.docker.io", "library/nginx", "latest", 443],
    ["nginx:1.27", "registry-1.docker.io", "library/nginx", "1.27", 443],
    ["bitnami/redis:7", "registry-1.docker.io", "bitnami/redis", "7", 443],
    ["docker.io/library/alpine:3", "registry-1.docker.io", "library/alpine", "3", 443],
    ["quay.io/prometheus/node-exporter:v1.8.0", "quay.io", "prometheus/node-exporter", "v1.8.0", 443],
    [`ghcr.io/org/app@${D}`, "ghcr.io", "org/app", D, 443],
    [`ghcr.io/org/app:1.0@${D}`, "ghcr.io", "org/app", D, 443],
    ["localhost:5000/x", "localhost", "x", "latest", 5000],
    ["registry.example.com:8443/team/x:tag", "registry.example.com", "team/x", "tag", 8443],
  ])("%s", (input, host, name, reference, port) => {
    expect(parseImageReference(input)).toMatchObject({ host, name, reference, port });
  });

  it("rejects nonsense", () => {
    expect(() => parseImageReference("")).toThrow(ImageReferenceError);
    expect(() => parseImageReference("UPPER/case")).toThrow(ImageReferenceError);
    expect(() => parseImageReference("x@sha256:abc")).toThrow(ImageReferenceError);
    expect(() => parseImageReference("x:-bad")).toThrow(ImageReferenceError);
  });
});
