/**
 * CPU per GB of the replica that fills a blob it lacks, by where the bytes come from: upstream (a
 * cold fill, the reference), a peer that holds it, and the fleet's object store. Each run starts
 * a fresh replica, fills a 20 MB blob the same way first (so that start-up and the first TLS
 * connections are not counted), then reads the large blob once with curl and reads the
 * replica's utime+stime from /proc/<pid>/stat before and after, once the fill is stored.
 *
 *   tsc -p tsconfig.json && tsc -p bench/tsconfig.json && node bench/.build/bench/fill-cpu.js
 *
 * BENCH_RUNS (3) runs of each; BENCH_SCALE scales the 200 MB blob.
 */
import { execFile } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { promisify } from "node:util";
import { curlThrough } from "../test/e2e/harness/clients.js";
import { REGISTRY_HOST, TestEnvironment } from "../test/e2e/harness/environment.js";
import { fleetArgs } from "../test/e2e/harness/fleet-args.js";
import { freePort, waitFor } from "../test/e2e/harness/ports.js";
import { TestRedis } from "../test/e2e/harness/redis.js";
import type { RegcacheProcess } from "../test/e2e/harness/regcache-process.js";
import { TestSwift } from "../test/e2e/harness/swift.js";
import { rankMembers } from "../src/cluster/rendezvous.js";

const exec = promisify(execFile);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const BLOB_BYTES = Math.round(200_000_000 * Number(process.env.BENCH_SCALE ?? 1));
/** Clock ticks per second of /proc's times (USER_HZ, 100 on Linux). */
const TICKS = 100;

function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
}

function log(message: string): void {
  process.stderr.write(`[fill-cpu] ${message}\n`);
}

async function main(): Promise<void> {
  const env = new TestEnvironment("fill-cpu");
  const swift = new TestSwift(env.path("swift"));
  const redis = new TestRedis();
  try {
    await env.start();
    await Promise.all([swift.start(), redis.start()]);
    log(`pushing a ${BLOB_BYTES / 1e6} MB blob and a 20 MB one`);
    const image = await env.pushImage("bench/fill", "1", [BLOB_BYTES, 20_000_000]);
    const [big, small] = image.layerDigests as [string, string];
    const url = (digest: string) => `https://${REGISTRY_HOST}/v2/${image.repo}/blobs/${digest}`;
    const read = async (proxy: RegcacheProcess, digest: string): Promise<void> => {
      const { stdout } = await exec("curl", ["-sf", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", proxy.caFile, "-x", proxy.proxyUrl, url(digest)]);
      if (stdout !== "200") throw new Error(`curl ${digest} through ${proxy.proxyUrl}: status ${stdout}`);
    };
    const stored = (proxy: RegcacheProcess, digest: string) =>
      waitFor(async () => (await curlThrough(proxy, url(digest), ["-I"])).headers["x-cache"] === "HIT", 60_000, "the fill to be stored");
    /** CPU-s per GB of `asker` for one read of the big blob, after a warm-up read of the small one. */
    const measure = async (asker: RegcacheProcess): Promise<number> => {
      await read(asker, small);
      await stored(asker, small);
      const before = cpuSeconds(asker.pid!);
      await read(asker, big);
      await stored(asker, big);
      return ((cpuSeconds(asker.pid!) - before) * 1e9) / BLOB_BYTES;
    };
    const results: Record<string, number[]> = { "cold fill from upstream": [], "peer fill (asker)": [], "first read from the object store": [] };

    for (let i = 0; i < RUNS; i++) {
      const proxy = env.regcache(`cold-${i}`, ["--log-level", "info"]);
      await proxy.start();
      results["cold fill from upstream"]!.push(await measure(proxy));
      await proxy.stop();
      rmSync(proxy.dataDir, { recursive: true, force: true });
    }

    // Two replicas; the holder ranks first for both blobs, so the asker asks it.
    let ports: [number, number];
    for (;;) {
      ports = [await freePort(), await freePort()];
      const members = ports.map((p) => `127.0.0.1:${p}`);
      if (rankMembers(big, members)[0] === members[0] && rankMembers(small, members)[0] === members[0]) break;
    }
    const peerArgs = (self: number, other: number) => ["--log-level", "info", "--peer-listen", `127.0.0.1:${self}`, "--advertise", `127.0.0.1:${self}`, "--peer", `127.0.0.1:${other}`];
    const holder = env.regcache("holder", peerArgs(ports[0], ports[1]));
    await holder.start();
    await read(holder, small);
    await read(holder, big);
    for (let i = 0; i < RUNS; i++) {
      const asker = env.regcache(`asker-${i}`, peerArgs(ports[1], ports[0]));
      await asker.start();
      await waitFor(() => asker.logs.some((l) => l.msg === "peer is live"), 15_000, "the asker to see its peer");
      results["peer fill (asker)"]!.push(await measure(asker));
      await asker.stop();
      rmSync(asker.dataDir, { recursive: true, force: true });
    }
    await holder.stop();

    const replica = async (name: string): Promise<RegcacheProcess> => {
      const proxy = env.regcache(name, ["--log-level", "info", ...fleetArgs(swift, redis, await freePort(), "fill-cpu")], { env: swift.credentialsEnv });
      await proxy.start();
      return proxy;
    };
    const filler = await replica("filler");
    await read(filler, small);
    await read(filler, big);
    await waitFor(async () => ((await (await fetch(`${filler.proxyUrl}/api/stats`)).json()) as { shared: { uploads: { uploaded: number } } }).shared.uploads.uploaded >= 2, 120_000, "the uploads");
    await filler.stop();
    for (let i = 0; i < RUNS; i++) {
      const reader = await replica(`reader-${i}`);
      results["first read from the object store"]!.push(await measure(reader));
      await reader.stop();
      rmSync(reader.dataDir, { recursive: true, force: true });
    }

    process.stdout.write(`| path | CPU-s per GB of the replica that fills (${RUNS} runs) | median |\n| --- | --- | --- |\n`);
    for (const [path, values] of Object.entries(results)) {
      const sorted = [...values].sort((a, b) => a - b);
      process.stdout.write(`| ${path} | ${values.map((v) => v.toFixed(2)).join(", ")} | ${sorted[Math.floor(sorted.length / 2)]!.toFixed(2)} |\n`);
    }
  } finally {
    await env.cleanup();
    await swift.stop();
    await redis.stop();
  }
}

main().catch((err: unknown) => {
  log(`failed: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});
