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

describe.skipIf(missing.length > 0)("during an outage: the stats page, /metrics and `regcache stats` say which registry is down", () => {
  let env: TestEnvironment;
  let proxy: RegcacheProcess;
  let adminUrl: string;
  let image: { ref: string };

  const adminUrlOf = async (p: RegcacheProcess): Promise<string> => `http://${String((await p.waitForLog((l) => l.msg === "regcache listening")).adminListen)}`;
  const stats = async (): Promise<any> => JSON.parse((await exec("curl", ["-sf", `${adminUrl}/api/stats`])).stdout);
  const metricsText = async (): Promise<PromMetric[]> => parsePrometheusTextFormat((await exec("curl", ["-sf", `${adminUrl}/metrics`])).stdout) as PromMetric[];
  const series = (metrics: PromMetric[], name: string): { labels: Record<string, string>; value: number }[] =>
    (metrics.find((m) => m.name === name)?.metrics ?? []).map((m) => ({ labels: m.labels ?? {}, value: Number(m.value) }));

  beforeAll(async () => {
    env = new TestEnvironment("stats-outage");
    await env.start();
    image = await env.pushImage("team/web", "2.0", [200_000]);
    // down.test: a port nothing listens on. The probe is slow so that a down host stays down while the test looks.
    proxy = env.regcache("outage", ["--failure-threshold", "3", "--probe-interval", "10m", "--admin-listen", "127.0.0.1:0", "--resolve", "down.test:443=127.0.0.1:9"]);
    await proxy.start();
    adminUrl = await adminUrlOf(proxy);
    expect((await skopeoPull(proxy, image.ref, env.path("warm"))).ok).toBe(true);
    await env.registry.stop();
  });
  afterAll(async () => env?.cleanup());

  it("with --admin-listen, the figures and the cache admin API leave the proxy port; the CA, node setup and probes stay", async () => {
    const status = async (url: string, extra: string[] = []): Promise<string> => (await exec("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", ...extra, url])).stdout;
    for (const path of ["/", "/api/stats", "/metrics", "/api/cache/images"]) expect(await status(`${proxy.proxyUrl}${path}`), path).toBe("404");
    expect(await status(`${proxy.proxyUrl}/api/cache/blobs/sha256:${"0".repeat(64)}`, ["-X", "DELETE"])).toBe("404");
    const moved = JSON.parse((await exec("curl", ["-s", `${proxy.proxyUrl}/metrics`])).stdout);
    expect(moved.error).toBe(`/metrics is served on --admin-listen (${adminUrl.slice(7)}), not on the proxy port`);
    for (const path of ["/ca.crt", "/setup/node.sh", "/healthz", "/readyz"]) expect(await status(`${proxy.proxyUrl}${path}`), path).toBe("200");
    for (const path of ["/", "/api/stats", "/metrics", "/healthz", "/readyz", "/api/cache/images"]) expect(await status(`${adminUrl}${path}`), path).toBe("200");
    expect(await status(`${adminUrl}/setup/node.sh`)).toBe("404");
  });

  it("a host whose last requests failed is failing before the breaker opens; one past the threshold is down and served stale", async () => {
    expect((await curlThrough(proxy, "https://down.test/v2/lab/app/manifests/v1")).status).toBe(503);
    // Each pull revalidates the tag and fails to connect: the third failure in a row opens the circuit.
    for (let i = 0; i < 3; i++) expect((await skopeoPull(proxy, image.ref, env.path(`stale-${i}`))).ok).toBe(true);
    const s = await stats();
    const row = (host: string) => s.upstreams.find((u: { host: string }) => u.host === host);
    expect(row("down.test")).toMatchObject({ state: "failing", consecutiveFailures: 1, lastError: expect.stringMatching(/ECONNREFUSED/) });
    expect(row("quay.test")).toMatchObject({ state: "down", lastError: expect.stringMatching(/ECONNREFUSED/) });
    expect(row("quay.test").stale).toBeGreaterThanOrEqual(3);
    expect(s.totals.stale).toBe(row("quay.test").stale);
    expect(s.peers).toBeNull();
    // One definition of stale behind both: /metrics says what /api/stats says, by host.
    const m = await metricsText();
    expect(series(m, "regcache_stale_responses_total")).toEqual([{ labels: { host: "quay.test" }, value: s.totals.stale }]);
    expect(series(m, "regcache_upstream_up").find((x) => x.labels.host === "quay.test")?.value).toBe(0);
  });

  it("the page at 1280 and 390 px: the failing host as failing, the stale count, the last error, no sideways scrolling", async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    const s = await stats();
    const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"] });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      await page.goto(`${adminUrl}/`);
      await page.waitForFunction(() => document.querySelector('#upstreams tr[data-host="quay.test"]') !== null);
      for (const [width, height, shot] of [[1280, 900, "stats-page-outage.png"], [390, 844, "stats-page-outage-phone.png"]] as const) {
        await page.setViewportSize({ width, height });
        await page.waitForFunction(() => document.getElementById("stale")?.textContent !== "–");
        expect(await page.textContent('#upstreams tr[data-host="down.test"] .badge')).toBe("failing");
        expect(await page.textContent('#upstreams tr[data-host="quay.test"] .badge.down')).toBe("down");
        expect(await page.textContent('#upstreams tr[data-host="quay.test"] .badge.stale')).toBe("serving stale");
        expect(await page.textContent("#stale")).toBe(String(s.totals.stale));
        expect(await page.textContent("#noPeers")).toContain("No peers configured");
        // Served on the admin port, the page still tells nodes the proxy's.
        expect(await page.textContent("#snippet")).toContain(`HTTPS_PROXY=${proxy.proxyUrl}`);
        const view = await page.evaluate(() => {
          const error = document.querySelector('#upstreams tr[data-host="quay.test"] + tr.lasterr td') as HTMLElement;
          const box = error.getBoundingClientRect();
          const table = document.getElementById("upstreams")!;
          return {
            pageOverflow: document.documentElement.scrollWidth - window.innerWidth,
            tableOverflow: table.scrollWidth - table.parentElement!.clientWidth,
            errorText: error.textContent,
            errorInView: box.left >= 0 && box.right <= window.innerWidth && box.width > 0 && box.height > 0,
            errorCut: error.scrollWidth > error.clientWidth,
          };
        });
        expect(view.pageOverflow, `${width} px`).toBeLessThanOrEqual(0);
        expect(view.tableOverflow, `${width} px`).toBeLessThanOrEqual(0);
        expect(view.errorText).toMatch(/^last error: .*ECONNREFUSED/);
        expect(view.errorInView, `${width} px`).toBe(true);
        expect(view.errorCut, `${width} px`).toBe(false);
        await page.screenshot({ path: path.join(ARTIFACTS, shot), fullPage: true });
      }
    } finally {
      await browser.close();
    }
  });

  it("`regcache stats` beside serve (REGCACHE_ADMIN_LISTEN) prints the states, the stale answers and the last error", async () => {
    const { stdout } = await exec(process.execPath, [CLI, "stats"], { env: { ...process.env, REGCACHE_ADMIN_LISTEN: adminUrl.slice(7) } });
    const s = await stats();
    expect(stdout).toContain(`stale answers ${s.totals.stale} `);
    expect(stdout).toContain("peers: none configured");
    expect(stdout).toMatch(/^quay\.test +down +\d+ +\d+ +[1-9]\d* /m);
    expect(stdout).toMatch(/^down\.test +failing /m);
    expect(stdout).toMatch(/^ {2}1 failures in a row; last error: .*ECONNREFUSED/m);
  });

  it("a restart during the outage keeps regcache_upstream_up{host=\"quay.test\"} 0 by name, not as other", async () => {
    await proxy.stop();
    await proxy.start();
    adminUrl = await adminUrlOf(proxy);
    // quay.test is no configured registry (--resolve only says where to dial): its label comes from the data dir.
    expect(proxy.extraArgs).not.toContain("--allow-host");
    const markedDown = (): boolean => proxy.logs.some((l) => l.msg === "upstream marked down; serving from cache" && l.upstream === "quay.test");
    for (let i = 0; i < 5 && !markedDown(); i++) expect((await skopeoPull(proxy, image.ref, env.path(`after-${i}`))).ok).toBe(true);
    expect(markedDown()).toBe(true);
    const up = series(await metricsText(), "regcache_upstream_up");
    expect(up).toContainEqual({ labels: { host: "quay.test" }, value: 0 });
    expect(up.filter((x) => x.labels.host === "other")).toEqual([]);
  });
});
