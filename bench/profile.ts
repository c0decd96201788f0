/**
 * CPU profiles of regcache's cold path (empty cache) and hit path (warm cache) for one
 * skopeo pull each, and of small requests (a cached manifest by digest and a tag HEAD under
 * --tag-ttl 0, 16 connections, 3 s each), written to bench/results/profiles/*.cpuprofile (open
 * them in Chrome DevTools or speedscope for flame graphs); prints the top functions by self time.
 *
 *   npm run bench:profile            (BENCH_SCALE=1: a 350 MB image)
 */
import { execFile } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { goClientEnv } from "../test/e2e/harness/clients.js";
import { ProxyAgent } from "undici";
import { REGISTRY_HOST, TestEnvironment } from "../test/e2e/harness/environment.js";
import { REPO_ROOT } from "../test/e2e/harness/regcache-process.js";
import { load, primeSmallRequests } from "./small-requests.js";

const exec = promisify(execFile);
const SCALE = Number(process.env.BENCH_SCALE ?? 1);
const MB = 1_000_000;

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

function topSelfTime(file: string, count = 20): string[] {
  const profile = JSON.parse(readFileSync(file, "utf8")) as { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };
  const where = new Map<number, string>();
  for (const node of profile.nodes) {
    where.set(node.id, `${node.callFrame.functionName || "(anonymous)"} ${node.callFrame.url.replace(/^.*node_modules\//, "").replace(/^file:\/\/.*\/dist\//, "dist/")}:${node.callFrame.lineNumber}`);
  }
  // Each sample's time delta is the time spent where that sample landed.
  const totals = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const key = where.get(id)!;
    totals.set(key, (totals.get(key) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  });
  const busy = [...totals.entries()].filter(([key]) => !key.startsWith("(idle)")).reduce((sum, [, ms]) => sum + ms, 0);
  return [
    `busy ${busy.toFixed(0)} ms (idle excluded)`,
    ...[...totals.entries()]
      .filter(([key]) => !key.startsWith("(idle)"))
      .sort((a, b) => b[1] - a[1])
      .slice(0, count)
      .map(([key, ms]) => `${ms.toFixed(0).padStart(6)} ms ${((100 * ms) / busy).toFixed(1).padStart(5)}%  ${key}`),
  ];
}

async function main(): Promise<void> {
  const out = path.join(REPO_ROOT, "bench", "results", "profiles");
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const env = new TestEnvironment("profile");
  try {
    await env.start();
    const image = await env.pushImage("bench/big", "1", [150, 120, 80].map((m) => Math.round(m * MB * SCALE)));
    for (const phase of ["cold", "warm"] as const) {
      process.env.REGCACHE_NODE_ARGS = `--cpu-prof --cpu-prof-dir=${out} --cpu-prof-name=${phase}.cpuprofile`;
      const proxy = env.regcache("profiled", ["--log-level", "info"]);
      await proxy.start();
      // The same data dir serves both phases: the "warm" process starts with the cache the "cold" one filled.
      const dest = env.path(`dest-${phase}`);
      await exec("skopeo", ["--insecure-policy", "copy", `docker://${image.ref}`, `dir:${dest}`], { env: goClientEnv(proxy), maxBuffer: 64 * MB });
      await proxy.stop();
      rmSync(dest, { recursive: true, force: true });
    }
    // Small requests: a cached manifest by digest (GET, HEAD) and a tag HEAD under --tag-ttl 0, 16 connections.
    process.env.REGCACHE_NODE_ARGS = `--cpu-prof --cpu-prof-dir=${out} --cpu-prof-name=requests.cpuprofile`;
    const small = await primeSmallRequests(env);
    const agent = new ProxyAgent({ uri: small.proxy.proxyUrl, requestTls: { ca: readFileSync(small.proxy.caFile, "utf8") }, connections: 16 });
    for (const [method, reference] of [["GET", small.image.digest], ["HEAD", small.image.digest], ["HEAD", small.image.tag]] as const) {
      await load(agent, `https://${REGISTRY_HOST}`, `/v2/${small.image.repo}/manifests/${reference}`, method, 16, 3);
    }
    await agent.close();
    await small.proxy.stop();
    for (const file of readdirSync(out)) {
      process.stdout.write(`\n${file}: top self time\n${topSelfTime(path.join(out, file)).join("\n")}\n`);
    }
  } finally {
    delete process.env.REGCACHE_NODE_ARGS;
    await env.cleanup();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`profile failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
