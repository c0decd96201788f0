import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TestEnvironment } from "./harness/environment.js";
import { exchange, tlsThroughProxy } from "./harness/raw-http.js";
import { freePort, waitFor } from "./harness/ports.js";
import { CLI, type RegcacheProcess } from "./harness/regcache-process.js";
import { missingTools } from "./harness/tools.js";

const missing = missingTools("openssl");

/** Ten times the 1000 entries each per-host structure keeps: whatever is unbounded shows. */
const HOSTS = 10_000;
/** Two cores: enough in flight to keep both busy with minting and handshakes, not so many that connections time out. */
const CONCURRENCY = 16;
/** The stats page polls /api/stats every 2 s: it must stay small whatever the number of hosts. */
const MAX_STATS_BYTES = 100 * 1024;
/** Prometheus scrapes /metrics; a series per host would put 10 000 series in every scrape. */
const MAX_METRICS_BYTES = 100 * 1024;

function rssBytes(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!match) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/** One CONNECT, TLS handshake with SNI (verified against regcache's CA) and GET /v2/ to `host`. */
async function ping(proxy: RegcacheProcess, ca: string, host: string): Promise<number> {
  const socket = await tlsThroughProxy(proxy.port, `${host}:443`, host, ca);
  const [response] = await exchange(socket, [{ method: "GET", path: "/v2/", host }]);
  return response!.status;
}

describe.skipIf(missing.length > 0)(`${HOSTS} distinct upstream hosts`, () => {
  const hosts = Array.from({ length: HOSTS }, (_, i) => `h${i}.example.test`);
  let env: TestEnvironment;
  let proxy: RegcacheProcess;
  let ca: string;
  const statuses = new Map<number, number>();
  let seconds = 0;

  beforeAll(async () => {
    // No registry: every host is routed to a closed port, so each ping fails upstream at once
    // and regcache answers it itself (200 {} while upstream is unreachable). --resolve rather
    // than names that do not resolve: a resolver can take seconds to say so, or time out.
    env = new TestEnvironment("many-hosts");
    const closedPort = await freePort();
    proxy = env.regcache("many", hosts.flatMap((host) => ["--resolve", `${host}:443=127.0.0.1:${closedPort}`]));
    await proxy.start();
    ca = readFileSync(proxy.caFile, "utf8");
    const started = Date.now();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < HOSTS) {
        const status = await ping(proxy, ca, hosts[next++]!);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    seconds = (Date.now() - started) / 1000;
  }, 300_000);
  afterAll(async () => env?.cleanup());

  it("answers every host, each with its own verified leaf", () => {
    expect(statuses).toEqual(new Map([[200, HOSTS]]));
  });

  // RSS is printed, not asserted: memory is a figure for bench/, measured beside a baseline, never a timed or sized assertion in a test.
  it("keeps /api/stats and /metrics bounded, with totals that count every request", async () => {
    let body = "";
    await waitFor(
      async () => {
        body = await (await fetch(`${proxy.proxyUrl}/api/stats`)).text();
        return (JSON.parse(body) as { totals: { requests: number } }).totals.requests >= HOSTS;
      },
      10_000,
      `/api/stats to count ${HOSTS} requests`,
    );
    const stats = JSON.parse(body);
    const metrics = await (await fetch(`${proxy.proxyUrl}/metrics`)).text();
    const rss = rssBytes(proxy.pid!);
    console.info(`many-hosts: ${HOSTS} hosts in ${seconds.toFixed(1)} s; RSS ${(rss / 2 ** 20).toFixed(0)} MiB; /api/stats ${body.length} B; /metrics ${metrics.length} B; ${stats.upstreams.length} upstreams listed, ${stats.upstreamsOmitted} omitted`);
    expect(stats.totals.requests).toBe(HOSTS);
    expect(stats.upstreams.length + stats.upstreamsOmitted).toBeGreaterThanOrEqual(1000);
    expect(stats.upstreams.reduce((n: number, u: { requests: number }) => n + u.requests, 0)).toBeLessThanOrEqual(stats.totals.requests);
    expect(Buffer.byteLength(body)).toBeLessThan(MAX_STATS_BYTES);
    expect(Buffer.byteLength(metrics)).toBeLessThan(MAX_METRICS_BYTES);
  });

  it("`regcache stats` lists the most active hosts and says how many it left out", async () => {
    const stats = await (await fetch(`${proxy.proxyUrl}/api/stats`)).json();
    const { stdout } = await promisify(execFile)(process.execPath, [CLI, "stats", "--proxy", proxy.proxyUrl]);
    expect(stats.upstreamsOmitted).toBeGreaterThan(0);
    expect(stdout).toContain(`${stats.upstreamsOmitted} more hosts, less active, not listed`);
    expect(stdout.split("\n").filter((line) => /\.example\.test /.test(line))).toHaveLength(stats.upstreams.length);
  });

  it("still serves a host whose TLS context and leaf were long evicted", async () => {
    expect(await ping(proxy, ca, hosts[0]!)).toBe(200);
  });
});
