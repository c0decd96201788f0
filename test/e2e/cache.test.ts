import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { readdirSync, statSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { corruptBlobsInLayout, curlThrough, skopeoPull, TestContainerd } from "./harness/clients.js";
import { TestEnvironment, type PushedImage } from "./harness/environment.js";
import { drip, FakeUpstream } from "./harness/fake-upstream.js";
import { waitFor } from "./harness/ports.js";
import type { RegcacheProcess } from "./harness/regcache-process.js";
import { containerdUnavailable, missingTools } from "./harness/tools.js";

const exec = promisify(execFile);

const missing = missingTools("docker-registry", "skopeo", "openssl", "curl");

function sha256(data: Buffer): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

/** Every file under a directory, recursively. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(full));
    else out.push(full);
  }
  return out;
}

/** Body fetches only: the anonymous public-access probe (a HEAD) may come and go. */
function gets(upstream: FakeUpstream): number {
  return upstream.requests.filter((r) => r.method === "GET").length;
}

function dirBytes(dir: string): number {
  return filesUnder(dir).reduce((sum, f) => sum + statSync(f).size, 0);
}

describe.skipIf(missing.length > 0)("cache: blobs and manifests by digest against the real registry", () => {
  let env: TestEnvironment;
  let proxy: RegcacheProcess;
  let image: PushedImage;

  beforeAll(async () => {
    env = new TestEnvironment("cache");
    await env.start();
    image = await env.pushImage("team/app", "1.0", [400_000, 300_000, 100_000], 2);
    proxy = env.regcache();
    await proxy.start();
  });
  afterAll(async () => env?.cleanup());

  it("a second skopeo pull makes zero upstream blob requests", async () => {
    expect((await skopeoPull(proxy, image.ref, env.path("p1"), { all: true })).ok).toBe(true);
    const firstGets = env.registry.blobGets().length;
    expect(firstGets).toBeGreaterThan(0);
    env.registry.clearLog();
    const second = await skopeoPull(proxy, image.ref, env.path("p2"), { all: true });
    expect(second.ok).toBe(true);
    expect(corruptBlobsInLayout(env.path("p2")).corrupt).toEqual([]);
    expect(env.registry.blobGets()).toEqual([]);
    expect(env.registry.accessLog.filter((e) => e.method === "GET" && e.path.includes("/manifests/sha256:"))).toEqual([]);
    await proxy.waitForLog((l) => l.msg === "request" && l.kind === "blob" && l.cache === "HIT");
  });

  it("answers HEAD from the index with Content-Length and Docker-Content-Digest", async () => {
    const layer = image.layerDigests[0]!;
    env.registry.clearLog();
    const res = await curlThrough(proxy, `https://quay.test/v2/team/app/blobs/${layer}`, ["-I"]);
    expect(res.status).toBe(200);
    expect(res.headers["docker-content-digest"]).toBe(layer);
    expect(Number(res.headers["content-length"])).toBeGreaterThan(0);
    expect(res.headers["x-cache"]).toBe("HIT");
    expect(env.registry.accessLog).toEqual([]);
  });

  it("serves the same digest to another repository and keeps manifest Content-Type exact", async () => {
    const manifest = image.manifests[0]!;
    const res = await curlThrough(proxy, `https://quay.test/v2/team/app/manifests/${manifest.digest}`, ["-H", `Accept: ${manifest.mediaType}`]);
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toBe(manifest.mediaType);
    expect(sha256(res.body)).toBe(manifest.digest);
    const refused = await curlThrough(proxy, `https://quay.test/v2/team/app/manifests/${manifest.digest}`, ["-H", "Accept: application/vnd.docker.distribution.manifest.v1+prettyjws"]);
    expect(refused.headers["x-cache"]).not.toBe("HIT");
  });

  it("answers Range on a cached blob with 206 and Content-Range, and 416 past the end", async () => {
    const layer = image.layerDigests[1]!;
    const full = await curlThrough(proxy, `https://quay.test/v2/team/app/blobs/${layer}`);
    const size = full.body.length;
    const partial = await curlThrough(proxy, `https://quay.test/v2/team/app/blobs/${layer}`, ["-H", "Range: bytes=100-"]);
    expect(partial.status).toBe(206);
    expect(partial.headers["content-range"]).toBe(`bytes 100-${size - 1}/${size}`);
    expect(partial.body.equals(full.body.subarray(100))).toBe(true);
    const suffix = await curlThrough(proxy, `https://quay.test/v2/team/app/blobs/${layer}`, ["-H", "Range: bytes=-10"]);
    expect(suffix.status).toBe(206);
    expect(suffix.body.equals(full.body.subarray(size - 10))).toBe(true);
    const beyond = await curlThrough(proxy, `https://quay.test/v2/team/app/blobs/${layer}`, ["-H", `Range: bytes=${size}-`]);
    expect(beyond.status).toBe(416);
    expect(beyond.headers["content-range"]).toBe(`bytes */${size}`);
  });

  it("refuses invalid digests with registry JSON and touches no file", async () => {
    const res = await curlThrough(proxy, "https://quay.test/v2/team/app/blobs/sha256:zz", []);
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body.toString()).errors[0].code).toBe("DIGEST_INVALID");
  });

  it("passes upstream 404s through uncached", async () => {
    const unknown = `sha256:${"0".repeat(64)}`;
    const res = await curlThrough(proxy, `https://quay.test/v2/team/app/blobs/${unknown}`);
    expect(res.status).toBe(404);
    expect(JSON.parse(res.body.toString()).errors[0].code).toBe("BLOB_UNKNOWN");
  });

  describe.skipIf(containerdUnavailable())("containerd", () => {
    it("a ctr pull after skopeo warmed the cache makes zero upstream blob requests", async () => {
      const containerd = new TestContainerd(env.path("containerd"));
      await containerd.start();
      try {
        env.registry.clearLog();
        const result = await containerd.pull(proxy, image.ref, { allPlatforms: true });
        expect(result.ok).toBe(true);
        expect((await containerd.verifyContent()).corrupt).toEqual([]);
        expect(env.registry.blobGets()).toEqual([]);
      } finally {
        await containerd.stop();
      }
    });
  });
});

describe.skipIf(missing.length > 0)("cache: coalescing, restarts and the size bound", () => {
  let env: TestEnvironment;

  beforeAll(async () => {
    env = new TestEnvironment("coalesce");
    await env.start();
  });
  afterAll(async () => env?.cleanup());

  it("6 concurrent cold pulls fetch each blob from upstream exactly once, all correct", async () => {
    const image = await env.pushImage("team/six", "v1", [2_000_000, 1_000_000, 500_000]);
    const proxy = env.regcache("six");
    await proxy.start();
    env.registry.clearLog();
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => skopeoPull(proxy, image.ref, env.path(`six-${i}`))));
    for (const [i, r] of results.entries()) {
      expect(r.ok, r.stderr).toBe(true);
      expect(corruptBlobsInLayout(env.path(`six-${i}`)).corrupt).toEqual([]);
    }
    for (const digest of image.allDigests.filter((d) => d !== image.topDigest)) {
      expect(env.registry.blobGets(digest).length, digest).toBeLessThanOrEqual(1);
    }
    for (const layer of image.layerDigests) expect(env.registry.blobGets(layer).length).toBe(1);
    await proxy.waitForLog((l) => l.msg === "request" && l.kind === "blob" && l.cache === "MISS");
    await proxy.stop();
  });

  it("the cache survives a restart", async () => {
    const image = await env.pushImage("team/restart", "v1", [300_000]);
    const proxy = env.regcache("restart");
    await proxy.start();
    expect((await skopeoPull(proxy, image.ref, env.path("r1"))).ok).toBe(true);
    expect(await proxy.stop()).toBe(0);
    await proxy.start();
    env.registry.clearLog();
    expect((await skopeoPull(proxy, image.ref, env.path("r2"))).ok).toBe(true);
    expect(env.registry.blobGets()).toEqual([]);
    await proxy.stop();
  });

  it("kill -9 during a cold pull, then restart: the pull is correct and no stray file remains", async () => {
    const layer = randomBytes(3_000_000);
    const digest = sha256(layer);
    let slow = true;
    const upstream = new FakeUpstream(env.pki, (_req, res) => {
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": layer.length, "docker-content-digest": digest });
      if (slow) drip(res, layer, 100, 100);
      else res.end(layer);
    });
    await upstream.start();
    const proxy = env.regcache("kill9", upstream.resolveArg("slow.test"));
    await proxy.start();
    const url = `https://slow.test/v2/x/blobs/${digest}`;
    const pending = curlThrough(proxy, url);
    await waitFor(() => readdirSync(path.join(proxy.dataDir, "tmp")).length > 0, 10_000, "a temp file");
    await proxy.stop("SIGKILL");
    await pending;
    slow = false;
    await proxy.start();
    expect(readdirSync(path.join(proxy.dataDir, "tmp"))).toEqual([]);
    expect(filesUnder(path.join(proxy.dataDir, "blobs"))).toEqual([]);
    const res = await curlThrough(proxy, url);
    expect(res.status).toBe(200);
    expect(sha256(res.body)).toBe(digest);
    await waitFor(() => filesUnder(path.join(proxy.dataDir, "blobs")).length === 1, 5_000, "the blob to be stored");
    expect(readdirSync(path.join(proxy.dataDir, "tmp"))).toEqual([]);
    await proxy.stop();
    await upstream.stop();
  });

  it("answers Range on a blob still downloading, as the bytes arrive", async () => {
    const layer = randomBytes(2_000_000);
    const digest = sha256(layer);
    const upstream = new FakeUpstream(env.pki, (_req, res) => {
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": layer.length });
      drip(res, layer, 40, 50);
    });
    await upstream.start();
    const proxy = env.regcache("range-inflight", upstream.resolveArg("slow.test"));
    await proxy.start();
    const url = `https://slow.test/v2/x/blobs/${digest}`;
    const first = curlThrough(proxy, url);
    await waitFor(() => readdirSync(path.join(proxy.dataDir, "tmp")).length > 0, 10_000, "the download to start");
    const ranged = await curlThrough(proxy, url, ["-H", "Range: bytes=1000000-"]);
    expect(ranged.status).toBe(206);
    expect(ranged.headers["x-cache"]).toBe("COALESCED");
    expect(ranged.headers["content-range"]).toBe(`bytes 1000000-1999999/2000000`);
    expect(ranged.body.equals(layer.subarray(1_000_000))).toBe(true);
    expect(sha256((await first).body)).toBe(digest);
    expect(gets(upstream)).toBe(1);
    await proxy.stop();
    await upstream.stop();
  });

  it("a blob upstream sends without Content-Length (chunked) is delivered whole, then served from the cache", async () => {
    const layer = randomBytes(1_500_000);
    const digest = sha256(layer);
    const upstream = new FakeUpstream(env.pki, (_req, res) => {
      res.writeHead(200, { "content-type": "application/octet-stream" });
      drip(res, layer, 10, 20);
    });
    await upstream.start();
    const proxy = env.regcache("chunked", upstream.resolveArg("slow.test"));
    await proxy.start();
    const url = `https://slow.test/v2/x/blobs/${digest}`;
    const first = await curlThrough(proxy, url, [], 20_000);
    expect(first.exitCode).toBe(0);
    expect(first.headers["x-cache"]).toBe("MISS");
    expect(sha256(first.body)).toBe(digest);
    await waitFor(() => filesUnder(path.join(proxy.dataDir, "blobs")).length === 1, 5_000, "the blob to be stored");
    const second = await curlThrough(proxy, url);
    expect(second.headers["x-cache"]).toBe("HIT");
    expect(second.headers["content-length"]).toBe(String(layer.length));
    expect(sha256(second.body)).toBe(digest);
    expect(gets(upstream)).toBe(1);
    await proxy.stop();
    await upstream.stop();
  });

  it("an upstream that serves wrong bytes for a digest never yields a cache entry or a complete body", async () => {
    const wrong = randomBytes(500_000);
    const claimed = sha256(randomBytes(16));
    const upstream = new FakeUpstream(env.pki, (_req, res) => {
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": wrong.length });
      drip(res, wrong, 5, 20);
    });
    await upstream.start();
    const proxy = env.regcache("wrong-bytes", upstream.resolveArg("bad.test"));
    await proxy.start();
    const url = `https://bad.test/v2/x/blobs/${claimed}`;
    const [a, b] = await Promise.all([curlThrough(proxy, url), curlThrough(proxy, url)]);
    for (const res of [a, b]) {
      expect(res.exitCode).not.toBe(0);
      expect(res.body.length).toBeLessThan(wrong.length);
    }
    expect(filesUnder(path.join(proxy.dataDir, "blobs"))).toEqual([]);
    await waitFor(() => readdirSync(path.join(proxy.dataDir, "tmp")).length === 0, 5_000, "the temp file to go");
    const error = await proxy.waitForLog((l) => l.msg === "download failed; nothing cached");
    expect(error.upstreamHost).toBe("bad.test");
    expect(JSON.stringify(error)).toContain("digest mismatch");
    const again = await curlThrough(proxy, url);
    expect(again.exitCode).not.toBe(0);
    expect(gets(upstream)).toBe(2);
    // Each cut response says why in its log line, and the mismatches are counted: not a "200, completed: false" without a reason.
    const lines = await proxy.waitForRequestLogs(3);
    for (const line of lines.filter((l) => l.path === `/v2/x/blobs/${claimed}`)) {
      expect(line).toMatchObject({ status: 200, completed: false, cut: "digest-mismatch" });
      expect(String(line.cutReason)).toContain(`expected ${claimed}`);
    }
    const { stdout: metrics } = await exec("curl", ["-s", `${proxy.proxyUrl}/metrics`]);
    expect(metrics).toMatch(/^regcache_digest_mismatches_total 2$/m);
    expect(metrics).toMatch(/^regcache_responses_cut_total\{reason="digest-mismatch"\} 3$/m);
    const { stdout: stats } = await exec("curl", ["-s", `${proxy.proxyUrl}/api/stats`]);
    expect((JSON.parse(stats) as { cache: { digestMismatches: number } }).cache.digestMismatches).toBe(2);
    await proxy.stop();
    await upstream.stop();
  });

  it("a client that disconnects does not cancel the download", async () => {
    const layer = randomBytes(1_000_000);
    const digest = sha256(layer);
    const upstream = new FakeUpstream(env.pki, (_req, res) => {
      res.writeHead(200, { "content-length": layer.length });
      drip(res, layer, 20, 50);
    });
    await upstream.start();
    const proxy = env.regcache("disconnect", upstream.resolveArg("slow.test"));
    await proxy.start();
    const url = `https://slow.test/v2/x/blobs/${digest}`;
    await curlThrough(proxy, url, ["--max-time", "0.3"]);
    await waitFor(() => filesUnder(path.join(proxy.dataDir, "blobs")).length === 1, 10_000, "the download to complete into the cache");
    const res = await curlThrough(proxy, url);
    expect(res.headers["x-cache"]).toBe("HIT");
    expect(sha256(res.body)).toBe(digest);
    expect(gets(upstream)).toBe(1);
    await proxy.stop();
    await upstream.stop();
  });

  it("under a small --max-cache-size the data dir stays under the bound and pulls keep succeeding", async () => {
    const bound = 3_000_000;
    const proxy = env.regcache("bounded", ["--max-cache-size", `${bound}B`]);
    await proxy.start();
    for (let i = 0; i < 4; i++) {
      const image = await env.pushImage(`team/bounded${i}`, "v1", [900_000, 600_000]);
      const result = await skopeoPull(proxy, image.ref, env.path(`bounded-${i}`));
      expect(result.ok, result.stderr).toBe(true);
      expect(corruptBlobsInLayout(env.path(`bounded-${i}`)).corrupt).toEqual([]);
      expect(dirBytes(path.join(proxy.dataDir, "blobs"))).toBeLessThanOrEqual(bound);
    }
    await proxy.waitForLog((l) => l.msg === "evicted least recently used blobs");
    const big = await env.pushImage("team/toolarge", "v1", [4_000_000]);
    const result = await skopeoPull(proxy, big.ref, env.path("toolarge"));
    expect(result.ok, result.stderr).toBe(true);
    expect(dirBytes(path.join(proxy.dataDir, "blobs"))).toBeLessThanOrEqual(bound);
    await proxy.stop();
  });
});
