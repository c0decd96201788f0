import { describe, expect, it } from "vitest";
import { RegcacheError, type ErrorCode } from "../../../src/errors.js";
import { ImageReferenceError } from "../../../src/oci/image-reference.js";
import { ERROR_ANSWERS, errorAnswer } from "../../../src/registry/errors.js";
import { UpstreamError, type UpstreamFailure } from "../../../src/upstream/upstream-error.js";

describe("error code to HTTP answer", () => {
  it.each<[ErrorCode, number, string]>([
    ["UPSTREAM_UNREACHABLE", 502, "UNAVAILABLE"],
    ["UPSTREAM_TLS", 502, "UNAVAILABLE"],
    ["UPSTREAM_PROTOCOL", 502, "UNAVAILABLE"],
    ["UPSTREAM_ADDRESS_REFUSED", 403, "DENIED"],
    ["CLIENT_REQUEST", 400, "UNSUPPORTED"],
    ["IMAGE_REFERENCE", 400, "NAME_INVALID"],
    ["CACHE_IO", 500, "UNAVAILABLE"],
    ["CONFIG", 500, "UNAVAILABLE"],
  ])("%s answers %i %s, with the error's message", (code, status, registryCode) => {
    expect(errorAnswer(new RegcacheError(code, "what happened"))).toEqual({ status, code: registryCode, message: "what happened" });
  });

  it("has a row for every code, and only upstream's own faults are 502", () => {
    const badGateway = Object.entries(ERROR_ANSWERS).filter(([, answer]) => answer.status === 502).map(([code]) => code);
    expect(badGateway.sort()).toEqual(["UPSTREAM_PROTOCOL", "UPSTREAM_TLS", "UPSTREAM_UNREACHABLE"]);
  });

  it.each<[UpstreamFailure, number]>([
    ["dns", 502],
    ["connect", 502],
    ["timeout", 502],
    ["circuit-open", 502],
    ["tls", 502],
    ["protocol", 502],
    ["refused-address", 403],
    ["request", 400],
  ])("an upstream %s failure answers %i", (failure, status) => {
    expect(errorAnswer(new UpstreamError(failure, "r.test", "x")).status).toBe(status);
  });

  it("answers subclasses by their code, and an error without one as regcache's own fault, keeping its message out", () => {
    expect(errorAnswer(new ImageReferenceError("UP", "invalid repository name")).status).toBe(400);
    expect(errorAnswer(new TypeError("x is not a function at /srv/secret/path"))).toEqual({ status: 500, code: "UNAVAILABLE", message: "internal error in regcache" });
  });
});
