import { execFile } from "node:child_process";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { curlThrough, skopeoPull } from "./harness/clients.js";
import { TestEnvironment } from "./harness/environment.js";
import { CLI, REPO_ROOT, type RegcacheProcess } from "./harness/regcache-process.js";
import { missingTools } from "./harness/tools.js";

const exec = promisify(execFile);
const missing = missingTools("docker-registry", "skopeo", "openssl", "curl", "chromium");
const ARTIFACTS = path.join(REPO_ROOT, "test-artifacts");

interface PromMetric {
  name: string;
  type: string;
  metrics: { value?: string; labels?: Record<string, string>; buckets?: Record<string, string>; count?: string }[];
}

describe.skipIf(missing.length > 0)("stats page, /api/stats and /metrics after real traffic", () => {
  let env: TestEnvironment;
  let proxy: RegcacheProcess;
  let stats: any;
  let metrics: PromMetric[];

  beforeAll(async () => {
    env = new TestEnvironment("stats");
    await env.start();
    const image = await env.pushImage("team/app", "1.0", [300_000, 100_000]);
    proxy = env.regcache("stats");
    await proxy.start();
    expect((await skopeoPull(proxy, image.ref, env.path("a"))).ok).toBe(true);
    expect((await skopeoPull(proxy, image.ref, env.path("b"))).ok).toBe(true);
    expect((await curlThrough(proxy, `https://quay.test/v2/team/app/blobs/sha256:${"0".repeat(64)}`)).status).toBe(404);
    stats = JSON.parse((await exec("curl", ["-sf", `${proxy.proxyUrl}/api/stats`])).stdout);
    await proxy.waitForRequestLogs(stats.totals.requests);
    metrics = parsePrometheusTextFormat((await exec("curl", ["-sf", `${proxy.proxyUrl}/metrics`])).stdout) as PromMetric[];
  });
  afterAll(async () => env?.cleanup());

  const metric = (name: string): PromMetric => {
    const m = metrics.find((x) => x.name === name);
    if (!m) throw new Error(`metric ${name} missing`);
    return m;
  };
  const sum = (name: string, match: Record<string, string> = {}): number =>
    metric(name).metrics.filter((m) => Object.entries(match).every(([k, v]) => m.labels?.[k] === v)).reduce((a, m) => a + Number(m.value), 0);

  it("/api/stats totals agree with the request log", () => {
    const lines = proxy.requestLogs().filter((l) => ["blob", "manifest", "tag"].includes(String(l.kind)));
    const hits = lines.filter((l) => ["HIT", "STALE", "COALESCED"].includes(String(l.cache))).length;
    expect(stats.totals.contentRequests).toBe(lines.length);
    expect(stats.totals.hits).toBe(hits);
    expect(stats.totals.hits).toBeGreaterThan(0);
    expect(stats.totals.misses).toBeGreaterThan(0);
    expect(stats.totals.hitRatio).toBeCloseTo(hits / lines.length, 6);
    expect(stats.totals.bytesSaved).toBe(lines.filter((l) => l.cache === "HIT").reduce((a, l) => a + Number(l.bytes), 0));
    expect(stats.upstreams[0].host).toBe("quay.test");
    expect(stats.upstreams[0].state).toBe("up");
    expect(stats.topRepositories[0].repository).toBe("quay.test/team/app");
    expect(stats.recentRequests.length).toBe(Math.min(100, proxy.requestLogs().length));
    expect(stats.cache.entries).toBeGreaterThan(0);
    expect(stats.series.length).toBe(60);
  });

  it("/metrics counters match the traffic, with bounded labels", () => {
    const log = proxy.requestLogs();
    const blobHits = log.filter((l) => l.kind === "blob" && l.cache === "HIT");
    expect(sum("regcache_requests_total", { host: "quay.test", kind: "blob", cache: "HIT" })).toBe(blobHits.length);
    expect(sum("regcache_requests_total")).toBe(log.length);
    const cacheBytes = log.filter((l) => ["HIT", "STALE", "COALESCED"].includes(String(l.cache))).reduce((a, l) => a + Number(l.bytes), 0);
    expect(sum("regcache_served_bytes_total", { source: "cache" })).toBe(cacheBytes);
    expect(sum("regcache_upstream_requests_total", { host: "quay.test", status: "404" })).toBeGreaterThanOrEqual(1);
    expect(sum("regcache_certificates_minted_total")).toBeGreaterThanOrEqual(1);
    expect(sum("regcache_cache_entries")).toBe(stats.cache.entries);
    expect(sum("regcache_upstream_up", { host: "quay.test" })).toBe(1);
    expect(metric("regcache_request_duration_seconds").type).toBe("HISTOGRAM");
    expect(metric("regcache_process_resident_memory_bytes").type).toBe("GAUGE");
    for (const m of metrics) {
      for (const sample of m.metrics) {
        for (const value of Object.values(sample.labels ?? {})) {
          expect(value).not.toMatch(/sha256:|team\/app|127\.0\.0\.1/);
        }
      }
    }
  });

  it("the page shows the figures of /api/stats, live, on a desktop and a phone", async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    const browser = await chromium.launch({
      executablePath: "/usr/bin/chromium",
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      await page.goto(`${proxy.proxyUrl}/`);
      await page.waitForFunction(() => document.getElementById("hitRatio")?.textContent !== "–");
      const fresh = JSON.parse((await exec("curl", ["-sf", `${proxy.proxyUrl}/api/stats`])).stdout);
      expect(await page.textContent("#hitRatio")).toBe(`${(fresh.totals.hitRatio * 100).toFixed(1)}%`);
      expect(await page.textContent("#byteHitRatio")).toBe(`${(fresh.totals.byteHitRatio * 100).toFixed(1)}%`);
      expect(await page.textContent("#requests")).toBe(String(fresh.totals.contentRequests));
      expect(await page.textContent('#upstreams tr[data-host="quay.test"] .badge')).toBe("up");
      expect(await page.textContent("#top tbody")).toContain("quay.test/team/app");
      expect(await page.locator("#chart polyline").count()).toBeGreaterThanOrEqual(1);
      expect(await page.getAttribute('a[href="/ca.crt"]', "href")).toBe("/ca.crt");
      expect(await page.textContent("#snippet")).toContain(`${proxy.proxyUrl}/ca.crt`);
      await page.screenshot({ path: path.join(ARTIFACTS, "stats-page.png"), fullPage: true });
      await page.setViewportSize({ width: 390, height: 844 });
      await page.waitForTimeout(300);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      expect(overflow).toBeLessThanOrEqual(0);
      await page.screenshot({ path: path.join(ARTIFACTS, "stats-page-phone.png"), fullPage: true });
    } finally {
      await browser.close();
    }
  });

  it("`regcache stats` prints the summary, and --json the raw figures", async () => {
    const { stdout } = await exec(process.execPath, [CLI, "stats", "--proxy", proxy.proxyUrl]);
    expect(stdout).toMatch(/hit ratio \d+\.\d%/);
    expect(stdout).toContain("quay.test");
    const json = JSON.parse((await exec(process.execPath, [CLI, "stats", "--proxy", proxy.proxyUrl, "--json"])).stdout);
    expect(json.totals.contentRequests).toBeGreaterThanOrEqual(stats.totals.contentRequests);
  });
});

describe.skipIf(missing.length > 0)("stats tell the truth about failures", () => {
  let env: TestEnvironment;
  afterAll(async () => env?.cleanup());

  it("three pulls of an uncached image from an unreachable upstream: 0 hits, 0 stale, and each 503 says MISS", async () => {
    env = new TestEnvironment("stats-failures");
    // down.test resolves to a port nothing listens on.
    const proxy = env.regcache("failures", ["--resolve", "down.test:443=127.0.0.1:9", "--failure-threshold", "1"]);
    await proxy.start();
    for (let i = 0; i < 3; i++) {
      const res = await curlThrough(proxy, "https://down.test/v2/lab/app/manifests/v1");
      expect(res.status).toBe(503);
      expect(res.headers["x-cache"]).toBe("MISS");
      expect(res.headers["cache-status"]).toMatch(/fwd=miss; detail=upstream-unavailable/);
    }
    await proxy.waitForRequestLogs(3);
    const stats = (await (await fetch(`${proxy.proxyUrl}/api/stats`)).json()) as { totals: { hits: number; stale: number; hitRatio: number | null; contentRequests: number }; upstreams: { host: string; hits: number; stale: number }[] };
    expect(stats.totals).toMatchObject({ hits: 0, stale: 0, contentRequests: 3, hitRatio: 0 });
    expect(stats.upstreams.find((u) => u.host === "down.test")).toMatchObject({ hits: 0, stale: 0 });
    await proxy.stop();
  });
});
