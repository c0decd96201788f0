import { describe, expect, it } from "vitest";
import { classifyUpstreamError, isUpstreamFault, isUpstreamOutage, UpstreamError, type UpstreamFailure } from "../../../src/upstream/upstream-error.js";

const withCode = (code: string, message = `failed: ${code}`): Error => Object.assign(new Error(message), { code });

describe("classifyUpstreamError", () => {
  it.each<[string, UpstreamFailure]>([
    ["ENOTFOUND", "dns"],
    ["EAI_AGAIN", "dns"],
    ["EAI_NONAME", "dns"],
    ["UNABLE_TO_VERIFY_LEAF_SIGNATURE", "tls"],
    ["DEPTH_ZERO_SELF_SIGNED_CERT", "tls"],
    ["CERT_HAS_EXPIRED", "tls"],
    ["ERR_TLS_CERT_ALTNAME_INVALID", "tls"],
    ["ERR_SSL_WRONG_VERSION_NUMBER", "tls"],
    ["ERR_SSL_SOMETHING_NEW", "tls"],
    ["UND_ERR_CONNECT_TIMEOUT", "timeout"],
    ["UND_ERR_HEADERS_TIMEOUT", "timeout"],
    ["UND_ERR_BODY_TIMEOUT", "timeout"],
    ["ETIMEDOUT", "timeout"],
    ["ECONNREFUSED", "connect"],
    ["ECONNRESET", "connect"],
    ["EHOSTUNREACH", "connect"],
    ["ENETUNREACH", "connect"],
    ["UND_ERR_SOCKET", "connect"],
    ["EPIPE", "connect"],
    ["UND_ERR_NOT_SUPPORTED", "request"],
    ["UND_ERR_INVALID_ARG", "request"],
    ["UND_ERR_REQ_CONTENT_LENGTH_MISMATCH", "request"],
    ["UND_ERR_ABORTED", "request"],
    ["SOMETHING_ELSE", "protocol"],
  ])("%s is %s", (code, failure) => {
    const err = classifyUpstreamError(withCode(code), "r.test");
    expect(err.failure).toBe(failure);
    expect(err.host).toBe("r.test");
    expect(err.message).toMatch(/^upstream r\.test: /);
  });

  it("reads the code of the cause (undici wraps socket errors), and keeps the original as the cause", () => {
    const original = Object.assign(new Error("fetch failed"), { cause: withCode("ECONNREFUSED", "connect ECONNREFUSED 127.0.0.1:1") });
    const err = classifyUpstreamError(original, "r.test");
    expect(err.failure).toBe("connect");
    expect(err.message).toContain("connect ECONNREFUSED 127.0.0.1:1");
    expect(err.cause).toBe(original);
  });

  it("returns an UpstreamError as it is, and calls anything without a code a protocol failure", () => {
    const already = new UpstreamError("circuit-open", "r.test", "down");
    expect(classifyUpstreamError(already, "other.test")).toBe(already);
    expect(classifyUpstreamError("a string", "r.test").failure).toBe("protocol");
  });
});

describe("what a failure says of the host", () => {
  it.each<[UpstreamFailure, boolean, boolean]>([
    ["dns", true, true],
    ["connect", true, true],
    ["tls", true, true],
    ["timeout", true, true],
    ["protocol", true, true],
    ["circuit-open", false, true],
    ["request", false, true],
    ["refused-address", false, false],
  ])("%s: a fault of the host %s, an outage %s", (failure, fault, outage) => {
    expect(isUpstreamFault(failure)).toBe(fault);
    expect(isUpstreamOutage(new UpstreamError(failure, "r.test", "x"))).toBe(outage);
  });
});
