import { createHash } from "node:crypto";
import { createServer, type Server } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { corruptBlobsInLayout, curlThrough, layoutDigests, skopeoPull, TestContainerd } from "./harness/clients.js";
import { TestEnvironment, type PushedImage } from "./harness/environment.js";
import { FakeUpstream } from "./harness/fake-upstream.js";
import { waitFor } from "./harness/ports.js";
import type { RegcacheProcess } from "./harness/regcache-process.js";
import { containerdUnavailable, missingTools } from "./harness/tools.js";

const missing = missingTools("docker-registry", "skopeo", "openssl", "curl");
const noContainerd = containerdUnavailable();

describe.skipIf(missing.length > 0)("outage: cached images stay pullable while the registry is down", () => {
  let env: TestEnvironment;
  let proxy: RegcacheProcess;
  let multi: PushedImage;
  let single: PushedImage;

  beforeAll(async () => {
    env = new TestEnvironment("outage");
    await env.start();
    multi = await env.pushImage("library/web", "stable", [300_000, 100_000], 2);
    single = await env.pushImage("library/tool", "v2", [200_000]);
    proxy = env.regcache("outage", ["--probe-interval", "300ms", "--failure-threshold", "2"]);
    await proxy.start();
    // Warm by tag, as clients do before an outage.
    expect((await skopeoPull(proxy, multi.ref, env.path("warm-multi"), { all: true })).ok).toBe(true);
    expect((await skopeoPull(proxy, single.ref, env.path("warm-single"))).ok).toBe(true);
    if (!noContainerd) {
      const containerd = new TestContainerd(env.path("containerd-warm"));
      await containerd.start();
      expect((await containerd.pull(proxy, multi.ref, { allPlatforms: true })).ok).toBe(true);
      await containerd.stop();
    }
    await env.registry.stop();
  });
  afterAll(async () => env?.cleanup());

  it("skopeo pulls by tag with the registry stopped, marked stale", async () => {
    const result = await skopeoPull(proxy, single.ref, env.path("down-tag"));
    expect(result.ok, result.stderr).toBe(true);
    expect(corruptBlobsInLayout(env.path("down-tag")).corrupt).toEqual([]);
    await proxy.waitForLog((l) => l.msg === "request" && l.kind === "tag" && l.repository === "library/tool" && l.cache === "STALE");
    const res = await curlThrough(proxy, "https://quay.test/v2/library/tool/manifests/v2");
    expect(res.status).toBe(200);
    expect(res.headers.warning).toBe('110 - "Response is stale"');
    expect(res.headers["x-cache"]).toBe("STALE");
  });

  it("skopeo pulls by digest with the registry stopped", async () => {
    const ref = `quay.test/library/tool@${single.topDigest}`;
    const result = await skopeoPull(proxy, ref, env.path("down-digest"));
    expect(result.ok, result.stderr).toBe(true);
    expect(layoutDigests(env.path("down-digest")).sort()).toEqual([...single.allDigests].sort());
  });

  it("a client whose Accept does not name the type (curl's */*, or none) gets a cached manifest or index by digest with the registry stopped", async () => {
    for (const image of [single, multi]) {
      const url = `https://quay.test/v2/${image.repo}/manifests/${image.topDigest}`;
      for (const accept of ["Accept: */*", "Accept:"]) {
        const res = await curlThrough(proxy, url, ["-H", accept]);
        expect(res.status, `${image.repo} ${accept}`).toBe(200);
        expect(`sha256:${createHash("sha256").update(res.body).digest("hex")}`).toBe(image.topDigest);
        expect(res.headers["content-type"]).toBe(image.topMediaType);
        expect(res.headers["docker-content-digest"]).toBe(image.topDigest);
        const head = await curlThrough(proxy, url, ["-I", "-H", accept]);
        expect(head.status).toBe(200);
        expect(head.headers["content-length"]).toBe(String(res.body.length));
      }
    }
    await proxy.waitForLog((l) => l.msg === "request" && l.kind === "manifest" && l.repository === "library/web" && l.upstreamStatus === 0 && l.cache === "HIT");
  });

  it("...but not in a repository or on a registry not known to hold it: a registry error, not the bytes", async () => {
    for (const url of [`https://quay.test/v2/library/web/manifests/${single.topDigest}`, `https://quay.test/v2/other/tool/manifests/${single.topDigest}`, `https://open.test/v2/library/tool/manifests/${single.topDigest}`]) {
      for (const method of [[], ["-I"]]) {
        const res = await curlThrough(proxy, url, [...method, "-H", "Accept: */*"]);
        expect(res.status, `${method} ${url}`).toBe(503);
        expect(res.headers["docker-content-digest"]).toBeUndefined();
        if (method.length === 0) expect(JSON.parse(res.body.toString()).errors[0].code).toBe("UNAVAILABLE");
      }
    }
  });

  it("skopeo pulls a two-platform index with all platforms with the registry stopped", async () => {
    const result = await skopeoPull(proxy, multi.ref, env.path("down-multi"), { all: true });
    expect(result.ok, result.stderr).toBe(true);
    expect(layoutDigests(env.path("down-multi")).sort()).toEqual([...multi.allDigests].sort());
  });

  it.skipIf(noContainerd)("ctr from a new containerd pulls by tag with the registry stopped", async () => {
    const containerd = new TestContainerd(env.path("containerd-fresh"));
    await containerd.start();
    try {
      const result = await containerd.pull(proxy, multi.ref, { allPlatforms: true });
      expect(result.ok, result.stderr).toBe(true);
      expect((await containerd.verifyContent()).corrupt).toEqual([]);
      expect((await containerd.contentDigests()).sort()).toEqual([...multi.allDigests].sort());
    } finally {
      await containerd.stop();
    }
  });

  it("an uncached image fails quickly with a registry error", async () => {
    const result = await skopeoPull(proxy, "quay.test/library/never:v1", env.path("down-never"));
    expect(result.ok).toBe(false);
    expect(result.durationMs).toBeLessThan(10_000);
    const res = await curlThrough(proxy, "https://quay.test/v2/library/never/manifests/v1");
    expect(res.status).toBe(503);
    expect(JSON.parse(res.body.toString()).errors[0].code).toBe("UNAVAILABLE");
  });

  it("marks the host down and exposes it in the logs", async () => {
    const down = await proxy.waitForLog((l) => l.msg === "upstream marked down; serving from cache");
    expect(down.upstream).toBe("quay.test");
    expect(down.level).toBe(40);
  });

  it("after the registry comes back, a new image under the same tag is pulled with its new digest", async () => {
    await env.registry.start();
    const replaced = await env.pushImage("library/tool", "v2", [150_000]);
    expect(replaced.topDigest).not.toBe(single.topDigest);
    await waitFor(() => proxy.logs.some((l) => l.msg === "upstream recovered"), 10_000, "the probe to see the registry again");
    const result = await skopeoPull(proxy, single.ref, env.path("back"));
    expect(result.ok, result.stderr).toBe(true);
    expect(layoutDigests(env.path("back"))).toContain(replaced.topDigest);
    expect(layoutDigests(env.path("back"))).not.toContain(single.topDigest);
  });
});

describe.skipIf(missing.length > 0)("outage: 503, 429 and unresponsive upstreams", () => {
  let env: TestEnvironment;
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config: {}, layers: [] }));
  const digest = `sha256:${createHash("sha256").update(manifest).digest("hex")}`;
  const mediaType = "application/vnd.oci.image.manifest.v1+json";

  beforeAll(async () => {
    env = new TestEnvironment("flaky");
  });
  afterAll(async () => env?.cleanup());

  for (const failure of [503, 429]) {
    it(`serves the stale tag when upstream answers ${failure}`, async () => {
      let mode: "ok" | "fail" = "ok";
      const upstream = new FakeUpstream(env.pki, (req, res) => {
        if (mode === "fail") {
          res.writeHead(failure, { "content-type": "application/json", ...(failure === 429 ? { "retry-after": "60" } : {}) });
          res.end(JSON.stringify({ errors: [{ code: failure === 429 ? "TOOMANYREQUESTS" : "UNAVAILABLE", message: "nope" }] }));
          return;
        }
        const headers = { "content-type": mediaType, "content-length": manifest.length, "docker-content-digest": digest };
        res.writeHead(200, headers);
        res.end(req.method === "HEAD" ? undefined : manifest);
      });
      await upstream.start();
      const proxy = env.regcache(`fail-${failure}`, upstream.resolveArg("flaky.test"));
      await proxy.start();
      const url = "https://flaky.test/v2/app/manifests/latest";
      const accept = ["-H", `Accept: ${mediaType}`];
      const warm = await curlThrough(proxy, url, accept);
      expect(warm.status).toBe(200);
      expect(warm.headers["docker-content-digest"]).toBe(digest);
      // A revalidation HEAD, then one GET of the manifest by digest (plus, maybe, the anonymous public probe: a HEAD).
      expect(upstream.requests[0]!.method).toBe("HEAD");
      expect(upstream.requests.filter((r) => r.method === "GET").length).toBe(1);
      mode = "fail";
      const stale = await curlThrough(proxy, url, accept);
      expect(stale.status).toBe(200);
      expect(stale.body.equals(manifest)).toBe(true);
      expect(stale.headers["x-cache"]).toBe("STALE");
      expect(stale.headers.warning).toContain("110");
      const head = await curlThrough(proxy, url, [...accept, "-I"]);
      expect(head.status).toBe(200);
      expect(head.headers["docker-content-digest"]).toBe(digest);
      expect(Number(head.headers["content-length"])).toBe(manifest.length);
      const uncached = await curlThrough(proxy, "https://flaky.test/v2/app/manifests/other", accept);
      expect(uncached.status).toBe(failure === 429 ? 429 : 503);
      await proxy.stop();
      await upstream.stop();
    });
  }

  it("with --tag-ttl, tags are answered from the cache without asking upstream", async () => {
    const upstream = new FakeUpstream(env.pki, (req, res) => {
      res.writeHead(200, { "content-type": mediaType, "content-length": manifest.length, "docker-content-digest": digest });
      res.end(req.method === "HEAD" ? undefined : manifest);
    });
    await upstream.start();
    const proxy = env.regcache("ttl", [...upstream.resolveArg("flaky.test"), "--tag-ttl", "1h"]);
    await proxy.start();
    const url = "https://flaky.test/v2/app/manifests/latest";
    expect((await curlThrough(proxy, url)).status).toBe(200);
    const tagRequests = () => upstream.requests.filter((r) => r.url.endsWith("/manifests/latest")).length;
    const before = tagRequests();
    const again = await curlThrough(proxy, url);
    expect(again.status).toBe(200);
    expect(again.headers["x-cache"]).toBe("HIT");
    expect(tagRequests()).toBe(before);
    await proxy.stop();
    await upstream.stop();
  });

  it("an upstream that accepts connections but never answers fails within 10 s, and the ping still answers", async () => {
    const sockets: import("node:net").Socket[] = [];
    const blackhole: Server = createServer((s) => sockets.push(s));
    await new Promise<void>((r) => blackhole.listen(0, "127.0.0.1", r));
    const port = (blackhole.address() as import("node:net").AddressInfo).port;
    const proxy = env.regcache("blackhole", ["--resolve", `down.test:443=127.0.0.1:${port}`, "--connect-timeout", "2s"]);
    await proxy.start();
    const started = Date.now();
    const res = await curlThrough(proxy, "https://down.test/v2/app/manifests/latest");
    expect(res.status).toBe(503);
    expect(Date.now() - started).toBeLessThan(10_000);
    const ping = await curlThrough(proxy, "https://down.test/v2/");
    expect(ping.status).toBe(200);
    expect(ping.body.toString()).toBe("{}");
    await proxy.stop();
    for (const s of sockets) s.destroy();
    blackhole.close();
  });
});

describe.skipIf(missing.length > 0 || noContainerd)("outage: a cache warmed by containerd alone", () => {
  let env: TestEnvironment;
  afterAll(async () => env?.cleanup());

  it("ctr pulls by tag while the registry is down after one ctr pull warmed the cache (HEAD tag, then GET digest)", async () => {
    env = new TestEnvironment("ctr-only");
    await env.start();
    const image = await env.pushImage("library/daemon", "7", [120_000, 40_000], 2);
    const proxy = env.regcache("ctr-only");
    await proxy.start();
    const warm = new TestContainerd(env.path("containerd-warm"));
    await warm.start();
    expect((await warm.pull(proxy, image.ref, { allPlatforms: true })).ok).toBe(true);
    await warm.stop();
    await proxy.waitForLog((l) => l.msg === "request" && l.kind === "tag" && l.method === "HEAD");
    expect(proxy.requestLogs().some((l) => l.kind === "tag" && l.method === "GET")).toBe(false);
    await env.registry.stop();
    const fresh = new TestContainerd(env.path("containerd-fresh"));
    await fresh.start();
    try {
      const result = await fresh.pull(proxy, image.ref, { allPlatforms: true });
      expect(result.ok, result.stderr).toBe(true);
      expect((await fresh.contentDigests()).sort()).toEqual([...image.allDigests].sort());
    } finally {
      await fresh.stop();
    }
  });
});
