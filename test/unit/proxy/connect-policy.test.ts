import { describe, expect, it } from "vitest";
import { decideConnect, parseConnectTarget, type ConnectPolicy } from "../../../src/proxy/connect-policy.js";
import { checkDialAddress } from "../../../src/upstream/address-policy.js";

const base: ConnectPolicy = { allowPorts: [443], noIntercept: [], allowHosts: [], denyHosts: [], caPermittedDomains: [], unpermittedHosts: "tunnel", denyPrivateAddresses: false };

describe("decideConnect", () => {
  it("intercepts registries on allowed ports", () => {
    expect(decideConnect("registry-1.docker.io:443", base)).toEqual({ action: "intercept", host: "registry-1.docker.io", port: 443 });
  });

  it("refuses other ports with 403 and malformed targets with 400", () => {
    expect(decideConnect("quay.io:22", base)).toMatchObject({ action: "deny", status: 403 });
    expect(decideConnect("quay.io", base)).toMatchObject({ action: "deny", status: 400 });
    expect(decideConnect("a b:443", base)).toMatchObject({ action: "deny", status: 400 });
    expect(decideConnect("quay.io:99999", base)).toMatchObject({ action: "deny", status: 400 });
    expect(decideConnect("", base)).toMatchObject({ action: "deny", status: 400 });
  });

  it("tunnels --no-intercept hosts and hosts outside the CA's name constraints", () => {
    expect(decideConnect("git.corp.example:443", { ...base, noIntercept: ["*.corp.example"] })).toMatchObject({ action: "tunnel" });
    expect(decideConnect("example.org:443", { ...base, caPermittedDomains: ["quay.io"] })).toMatchObject({ action: "tunnel" });
    expect(decideConnect("cdn.quay.io:443", { ...base, caPermittedDomains: ["quay.io"] })).toMatchObject({ action: "intercept" });
  });

  it("denies hosts outside the name constraints when asked to", () => {
    expect(decideConnect("example.org:443", { ...base, caPermittedDomains: ["quay.io"], unpermittedHosts: "deny" })).toMatchObject({ action: "deny", status: 403 });
  });

  it("refuses metadata and link-local IP literals at CONNECT time", () => {
    expect(decideConnect("169.254.169.254:443", base)).toMatchObject({ action: "deny", status: 403 });
    expect(decideConnect("[fe80::1]:443", base)).toMatchObject({ action: "deny", status: 403 });
    expect(decideConnect("10.0.0.1:443", { ...base, denyPrivateAddresses: true })).toMatchObject({ action: "deny", status: 403 });
  });

  it("applies allow and deny lists", () => {
    expect(decideConnect("evil.test:443", { ...base, denyHosts: ["evil.test"] })).toMatchObject({ action: "deny", status: 403 });
    expect(decideConnect("other.test:443", { ...base, allowHosts: ["*.docker.io"] })).toMatchObject({ action: "deny", status: 403 });
  });

  it("parses IPv6 targets", () => {
    expect(parseConnectTarget("[::1]:443")).toEqual({ host: "::1", port: 443 });
  });
});

describe("checkDialAddress", () => {
  it("always refuses link-local and metadata addresses", () => {
    expect(checkDialAddress("169.254.169.254", false).allowed).toBe(false);
    expect(checkDialAddress("::ffff:169.254.169.254", false).allowed).toBe(false);
    expect(checkDialAddress("fe80::1", false).allowed).toBe(false);
    expect(checkDialAddress("0.0.0.0", false).allowed).toBe(false);
  });

  it("refuses private ranges only when asked", () => {
    expect(checkDialAddress("10.0.0.1", false).allowed).toBe(true);
    expect(checkDialAddress("10.0.0.1", true).allowed).toBe(false);
    expect(checkDialAddress("8.8.8.8", true).allowed).toBe(true);
  });
});
