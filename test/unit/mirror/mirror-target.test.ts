import { describe, expect, it } from "vitest";
import { parseMirrorTarget, parseUpstreamAuthority } from "../../../src/mirror/mirror-target.js";

const HUB = { host: "registry-1.docker.io", port: 443 };
const target = (url: string) => parseMirrorTarget(url, HUB);

describe("parseUpstreamAuthority", () => {
  it("reads HOST, HOST:PORT and [IPv6]:PORT, port 443 by default, Docker Hub's names as its API host", () => {
    expect(parseUpstreamAuthority("quay.io")).toEqual({ host: "quay.io", port: 443 });
    expect(parseUpstreamAuthority("registry.local:5000")).toEqual({ host: "registry.local", port: 5000 });
    expect(parseUpstreamAuthority("[fd00::1]:5000")).toEqual({ host: "fd00::1", port: 5000 });
    expect(parseUpstreamAuthority("[fd00::1]")).toEqual({ host: "fd00::1", port: 443 });
    expect(parseUpstreamAuthority("10.0.0.5")).toEqual({ host: "10.0.0.5", port: 443 });
    for (const hub of ["docker.io", "index.docker.io", "docker.io:443"]) expect(parseUpstreamAuthority(hub)).toEqual(HUB);
    expect(parseUpstreamAuthority("docker.io:5000")).toEqual({ host: "docker.io", port: 5000 });
  });

  it("refuses what is not a registry host", () => {
    for (const bad of ["", "::1", "quay.io:", "quay.io:0", "quay.io:70000", "a b", "quay.io/x", "..", "-bad.test", "[nope]:5000", "user@host", "x".repeat(300)]) {
      expect(parseUpstreamAuthority(bad), bad).toBeUndefined();
    }
  });
});

describe("parseMirrorTarget", () => {
  it("containerd: the upstream in ns, the name in the path; other query parameters stay", () => {
    expect(target("/v2/team/app/manifests/1.0?ns=quay.io")).toEqual({ ok: true, target: { host: "quay.io", port: 443, url: "/v2/team/app/manifests/1.0", namedBy: "ns" } });
    expect(target("/v2/library/alpine/blobs/sha256:ab?ns=docker.io")).toMatchObject({ target: { ...HUB, url: "/v2/library/alpine/blobs/sha256:ab" } });
    expect(target("/v2/app/manifests/1?ns=registry.local%3A5000&n=10")).toMatchObject({ target: { host: "registry.local", port: 5000, url: "/v2/app/manifests/1?n=10" } });
  });

  it("containerd with override_path and the registry in the mirror URL: its segment is dropped once", () => {
    expect(target("/v2/quay.io/team/app/manifests/1?ns=quay.io")).toMatchObject({ target: { host: "quay.io", url: "/v2/team/app/manifests/1" } });
    // A repository whose first component has a dot, on another registry, keeps it.
    expect(target("/v2/quay.io/app/manifests/1?ns=ghcr.io")).toMatchObject({ target: { host: "ghcr.io", url: "/v2/quay.io/app/manifests/1" } });
  });

  it("containers/image: the upstream as the first path segment", () => {
    expect(target("/v2/quay.io/team/app/manifests/1")).toEqual({ ok: true, target: { host: "quay.io", port: 443, url: "/v2/team/app/manifests/1", namedBy: "path" } });
    expect(target("/v2/docker.io/library/alpine/manifests/3")).toMatchObject({ target: { ...HUB, url: "/v2/library/alpine/manifests/3" } });
    expect(target("/v2/registry.local:5000/app/tags/list")).toMatchObject({ target: { host: "registry.local", port: 5000, url: "/v2/app/tags/list" } });
    // A reference cannot hold "registry.local:5000/" after its first component: the port comes as _5000.
    expect(target("/v2/registry.local_5000/app/manifests/1")).toMatchObject({ target: { host: "registry.local", port: 5000, url: "/v2/app/manifests/1" } });
    expect(target("/v2/localhost/app/manifests/1")).toMatchObject({ target: { host: "localhost", url: "/v2/app/manifests/1" } });
    expect(target("/v2/quay.io/")).toMatchObject({ target: { host: "quay.io", url: "/v2/" } });
  });

  it("Docker: no registry named, the default upstream", () => {
    expect(target("/v2/library/alpine/manifests/3.20")).toEqual({ ok: true, target: { ...HUB, url: "/v2/library/alpine/manifests/3.20", namedBy: "default" } });
    expect(target("/v2/")).toMatchObject({ target: { ...HUB, url: "/v2/", namedBy: "default" } });
    expect(target("/v2")).toMatchObject({ target: { url: "/v2/" } });
    expect(parseMirrorTarget("/v2/app/manifests/1", { host: "mirror.gcr.io", port: 443 })).toMatchObject({ target: { host: "mirror.gcr.io" } });
  });

  it("answers what is no registry request, or names no registry, with a registry error", () => {
    expect(target("/")).toMatchObject({ ok: false, status: 404, code: "UNSUPPORTED" });
    expect(target("/etc/passwd")).toMatchObject({ ok: false, status: 404 });
    expect(target("/v2x/app")).toMatchObject({ ok: false, status: 404 });
    expect(target("/v2/app/manifests/1?ns=quay.io&ns=ghcr.io")).toMatchObject({ ok: false, status: 400, message: "ns is given more than once" });
    for (const ns of ["", "a%20b", "quay.io:99999", "quay.io/x", "%00", "::1"]) {
      expect(target(`/v2/app/manifests/1?ns=${ns}`), ns).toMatchObject({ ok: false, status: 400, code: "NAME_INVALID" });
    }
    expect(target("/v2/bad_host.io:x/app/manifests/1")).toMatchObject({ ok: false, status: 400, code: "NAME_INVALID" });
    expect(target("/v2/Quay.IO:0/app/manifests/1")).toMatchObject({ ok: false, status: 400 });
  });
});
