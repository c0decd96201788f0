/**
 * Small requests, the ones every pod start makes: a cached manifest by digest (GET and HEAD) and
 * a tag HEAD revalidated upstream on every request (--tag-ttl 0), over kept-alive connections
 * from one undici client, directly from distribution and through regcache, interleaved, in turn.
 * Requests per second and latency percentiles; ratios of medians in the caller's run.
 */
import { readFileSync } from "node:fs";
import { Agent, ProxyAgent, type Dispatcher } from "undici";
import type { TestEnvironment } from "../test/e2e/harness/environment.js";
import { REGISTRY_HOST } from "../test/e2e/harness/environment.js";
import type { RegcacheProcess } from "../test/e2e/harness/regcache-process.js";
import { waitFor } from "../test/e2e/harness/ports.js";
import { percentile, summarize, type Summary } from "./stats.js";

/** What containerd sends when it resolves a tag (core/remotes/docker/resolver.go). */
const TAG_ACCEPT = [
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.oci.image.index.v1+json",
  "*/*",
].join(", ");

export interface LoadFigures {
  /** Requests answered in the timed part (the warm-up's 20 per connection are not counted). */
  requests: number;
  perSecond: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
}

export interface SmallRequestCase {
  /** e.g. "GET by digest, 1 connection" */
  label: string;
  method: "GET" | "HEAD";
  connections: number;
  /** By digest (the cached manifest) or by tag (revalidated upstream every time under --tag-ttl 0). */
  by: "digest" | "tag";
}

export const SMALL_REQUEST_CASES: SmallRequestCase[] = [
  { label: "GET by digest, 1 connection", method: "GET", connections: 1, by: "digest" },
  { label: "GET by digest, 16 connections", method: "GET", connections: 16, by: "digest" },
  { label: "HEAD by digest, 1 connection", method: "HEAD", connections: 1, by: "digest" },
  { label: "HEAD by digest, 16 connections", method: "HEAD", connections: 16, by: "digest" },
  { label: "HEAD by tag (--tag-ttl 0), 16 connections", method: "HEAD", connections: 16, by: "tag" },
];

export interface SmallRequestResult {
  label: string;
  by: SmallRequestCase["by"];
  direct: { perSecond: Summary; p50Ms: Summary; p90Ms: Summary; p99Ms: Summary };
  regcache: { perSecond: Summary; p50Ms: Summary; p90Ms: Summary; p99Ms: Summary };
  /** Median requests/s through regcache over median direct. */
  ratio: number;
  /**
   * Tag case, its last run: client requests regcache answered, how many of them led a
   * revalidation (did not join one in flight), and the tag HEADs the registry logged from regcache.
   */
  clientRequests?: number;
  leaders?: number;
  upstreamHeads?: number;
}

/**
 * `connections` loops on one dispatcher, each sending the next request when its answer is in,
 * for `seconds` (after a warm-up that opens every connection).
 */
export async function load(dispatcher: Dispatcher, origin: string, path: string, method: "GET" | "HEAD", connections: number, seconds: number): Promise<LoadFigures> {
  const one = async (): Promise<number> => {
    const started = performance.now();
    // undici closes the connection after a HEAD unless told not to (nodejs/undici#258): a HEAD
    // then measures a CONNECT and a TLS handshake, not the request. Go clients keep them alive.
    const { statusCode, body } = await dispatcher.request({ origin, path, method, headers: { accept: TAG_ACCEPT }, reset: false });
    await body.dump();
    if (statusCode !== 200) throw new Error(`${method} ${origin}${path} answered ${statusCode}`);
    return performance.now() - started;
  };
  await Promise.all(Array.from({ length: connections }, async () => {
    for (let i = 0; i < 20; i++) await one();
  }));
  const latencies: number[] = [];
  const started = performance.now();
  const until = started + seconds * 1000;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (performance.now() < until) latencies.push(await one());
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  return { requests: latencies.length, perSecond: latencies.length / elapsed, p50Ms: percentile(latencies, 50), p90Ms: percentile(latencies, 90), p99Ms: percentile(latencies, 99) };
}

function summaries(figures: LoadFigures[]): SmallRequestResult["direct"] {
  return {
    perSecond: summarize(figures.map((f) => f.perSecond)),
    p50Ms: summarize(figures.map((f) => f.p50Ms)),
    p90Ms: summarize(figures.map((f) => f.p90Ms)),
    p99Ms: summarize(figures.map((f) => f.p99Ms)),
  };
}

/**
 * Every case of SMALL_REQUEST_CASES, `runs` times each, direct and through `proxy` in turn.
 * `proxy` must run with --tag-ttl 0 and hold the manifest `repo`@`digest` (tagged `tag`).
 */
export async function measureSmallRequests(
  env: TestEnvironment,
  proxy: RegcacheProcess,
  image: { repo: string; tag: string; digest: string },
  runs: number,
  seconds: number,
): Promise<SmallRequestResult[]> {
  const directOrigin = `https://${env.registry.url}`;
  const proxiedOrigin = `https://${REGISTRY_HOST}`;
  const upstreamCa = readFileSync(env.pki.caCert, "utf8");
  const proxyCa = readFileSync(proxy.caFile, "utf8");
  const results: SmallRequestResult[] = [];
  for (const c of SMALL_REQUEST_CASES) {
    const path = `/v2/${image.repo}/manifests/${c.by === "digest" ? image.digest : image.tag}`;
    const direct: LoadFigures[] = [];
    const through: LoadFigures[] = [];
    let tagCounts: Pick<SmallRequestResult, "clientRequests" | "leaders" | "upstreamHeads"> = {};
    for (let i = 0; i < runs; i++) {
      // A fresh client per measurement: both start with no connection open.
      const directAgent = new Agent({ connections: c.connections, connect: { ca: upstreamCa } });
      direct.push(await load(directAgent, directOrigin, path, c.method, c.connections, seconds));
      const proxyAgent = new ProxyAgent({ uri: proxy.proxyUrl, requestTls: { ca: proxyCa }, connections: c.connections });
      env.registry.clearLog();
      const before = proxy.requestLogs().length;
      through.push(await load(proxyAgent, proxiedOrigin, path, c.method, c.connections, seconds));
      await proxyAgent.close();
      await proxy.waitForRequestLogs(before + through.at(-1)!.requests, 10_000);
      if (c.by === "tag") {
        // The registry logs asynchronously: a request after all of them, whose line comes after theirs.
        const sentinel = `/v2/?sentinel-${i}`;
        await (await directAgent.request({ origin: directOrigin, path: sentinel, method: "GET" })).body.dump();
        await waitFor(() => env.registry.accessLog.some((e) => e.path === sentinel), 10_000, "the registry's log");
        const lines = proxy.requestLogs().slice(before).filter((l) => l.method === "HEAD");
        tagCounts = {
          clientRequests: lines.length,
          leaders: lines.filter((l) => l.coalesced !== true).length,
          upstreamHeads: env.registry.accessLog.filter((e) => e.method === "HEAD" && e.path === path).length,
        };
      }
      await directAgent.close();
    }
    const d = summaries(direct);
    const r = summaries(through);
    results.push({ label: c.label, by: c.by, direct: d, regcache: r, ratio: r.perSecond.median / d.perSecond.median, ...tagCounts });
  }
  return results;
}

/**
 * A regcache process under --tag-ttl 0 holding a small image's manifest (fetched once by digest
 * through it), and that image: what measureSmallRequests asks for.
 */
export async function primeSmallRequests(env: TestEnvironment): Promise<{ proxy: RegcacheProcess; image: { repo: string; tag: string; digest: string } }> {
  const pushed = await env.pushImage("bench/small", "1", [1000]);
  const image = { repo: pushed.repo, tag: pushed.tag, digest: pushed.topDigest };
  const proxy = env.regcache("small-requests", ["--log-level", "info", "--tag-ttl", "0s"]);
  await proxy.start();
  const agent = new ProxyAgent({ uri: proxy.proxyUrl, requestTls: { ca: readFileSync(proxy.caFile, "utf8") } });
  const { statusCode, body } = await agent.request({ origin: `https://${REGISTRY_HOST}`, path: `/v2/${image.repo}/manifests/${image.digest}`, method: "GET", headers: { accept: TAG_ACCEPT } });
  await body.dump();
  await agent.close();
  if (statusCode !== 200) throw new Error(`priming the manifest answered ${statusCode}`);
  return { proxy, image };
}

const fmtLoad = (x: SmallRequestResult["direct"]): string =>
  `${x.perSecond.median.toFixed(0)}/s (${x.perSecond.min.toFixed(0)}–${x.perSecond.max.toFixed(0)}); p50 ${x.p50Ms.median.toFixed(2)}, p90 ${x.p90Ms.median.toFixed(2)}, p99 ${x.p99Ms.median.toFixed(2)} ms`;

/** Whether a case meets its target: ≥ 1.5× direct by digest (p99 no worse), ≥ 1.0× by tag with one upstream HEAD per coalesced group. */
export function smallRequestTarget(r: SmallRequestResult): { target: string; met: boolean } {
  if (r.upstreamHeads !== undefined) return { target: "≥ 1.0× direct, one upstream HEAD per group", met: r.ratio >= 1.0 && r.upstreamHeads === r.leaders };
  return { target: "≥ 1.5× direct, p99 ≤ direct's", met: r.ratio >= 1.5 && r.regcache.p99Ms.median <= r.direct.p99Ms.median };
}

/** The rows of the results table for these cases (same columns as bench/run.ts's table). */
export function smallRequestRows(results: SmallRequestResult[], runs: number): string[] {
  return results.map((r) => {
    const t = smallRequestTarget(r);
    const upstream = r.upstreamHeads !== undefined ? `; last run: ${r.clientRequests} requests in ${r.leaders} groups, ${r.upstreamHeads} upstream HEADs` : "";
    return `| ${r.by === "tag" ? "manifest" : "cached manifest"} ${r.label}, undici keep-alive, median of ${runs} | ${fmtLoad(r.direct)} | | | ${fmtLoad(r.regcache)}${upstream} | ${r.ratio.toFixed(2)}× direct | ${t.target}: ${t.met ? "met" : "**not met**"} |`;
  });
}
