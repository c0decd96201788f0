/**
 * regcache benchmark: cold and warm image pulls (skopeo, ~350 MB in 3 layers) and a warm
 * 200 MB blob download (curl) through regcache, side by side with direct pulls from the same
 * registry (Debian's docker-registry, distribution) in the same run, plus regcache's peak RSS
 * while 8 clients pull at once. Prints medians, spread and ratios; writes
 * bench/results/latest.json and bench/results/latest.md.
 *
 *   npm run bench                 (BENCH_RUNS=5 by default; BENCH_SCALE=0.1 for a quick smoke run)
 */
import { execFile } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { goClientEnv } from "../test/e2e/harness/clients.js";
import { TestEnvironment } from "../test/e2e/harness/environment.js";
import { REPO_ROOT, type RegcacheProcess } from "../test/e2e/harness/regcache-process.js";
import { percentile, summarize, type Summary } from "./stats.js";
import { head, tlsThroughProxy } from "./tunnel-client.js";

const exec = promisify(execFile);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const SCALE = Number(process.env.BENCH_SCALE ?? 1);
const MB = 1_000_000;
const IMAGE_LAYERS = [150, 120, 80].map((m) => Math.round(m * MB * SCALE));
const BLOB_SIZE = Math.round(200 * MB * SCALE);
const CONCURRENT = 8;


interface Timed {
  seconds: number;
  bytes?: number;
}

/** Like Promise.all, but on a failure prints the proxy's warnings and errors before rethrowing. */
async function settleAll(proxy: RegcacheProcess, work: Promise<unknown>[]): Promise<unknown[]> {
  const results = await Promise.allSettled(work);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) {
    for (const line of proxy.rawOutput) if (/"level":(40|50)|"completed":false/.test(line)) log(line.slice(0, 600));
    throw (failed as PromiseRejectedResult).reason;
  }
  return results;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const started = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - started) / 1e9;
}

function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

async function main(): Promise<void> {
  const env = new TestEnvironment("bench");
  const results: Record<string, unknown> = {};
  try {
    await env.start();
    log(`pushing a ${IMAGE_LAYERS.reduce((a, b) => a + b, 0) / MB} MB image and a ${BLOB_SIZE / MB} MB blob`);
    const image = await env.pushImage("bench/big", "1", IMAGE_LAYERS);
    const blobImage = await env.pushImage("bench/blob", "1", [BLOB_SIZE]);
    const blob = blobImage.layerDigests[0]!;
    const registry = `127.0.0.1:${env.registry.port}`;
    const dest = env.path("pull-dest");

    const skopeo = async (source: string, proxy?: RegcacheProcess): Promise<number> => {
      rmSync(dest, { recursive: true, force: true });
      const args = ["--insecure-policy", "copy", "--retry-times", "0", "--src-cert-dir", env.pki.certDir, `docker://${source}`, `dir:${dest}`];
      const envVars = proxy ? goClientEnv(proxy) : { ...process.env, HTTPS_PROXY: "", https_proxy: "" };
      return timed(() => exec("skopeo", args, { env: envVars, maxBuffer: 64 * MB }));
    };
    const curlBlob = async (proxy?: RegcacheProcess): Promise<Timed> => {
      const url = proxy ? `https://quay.test/v2/bench/blob/blobs/${blob}` : `https://${registry}/v2/bench/blob/blobs/${blob}`;
      const args = ["-sf", "-o", "/dev/null", "-w", "%{time_total} %{size_download}", "--cacert", proxy ? proxy.caFile : env.pki.caCert, ...(proxy ? ["-x", proxy.proxyUrl] : ["--noproxy", "*"]), url];
      const { stdout } = await exec("curl", args);
      const [seconds, bytes] = stdout.trim().split(" ").map(Number);
      return { seconds: seconds!, bytes: bytes! };
    };
    const quietProxy = (name: string): RegcacheProcess => env.regcache(name, ["--log-level", "info"]);

    log("cold pulls: a fresh regcache (empty cache) per run, alternating with direct pulls");
    const direct: number[] = [];
    const cold: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      direct.push(await skopeo(`${registry}/bench/big:1`));
      const proxy = quietProxy(`cold-${i}`);
      await proxy.start();
      cold.push(await skopeo(image.ref, proxy));
      await proxy.stop();
      rmSync(proxy.dataDir, { recursive: true, force: true });
    }

    log("warm pulls and warm blob downloads, alternating with direct ones");
    const warmProxy = quietProxy("warm");
    await warmProxy.start();
    await skopeo(image.ref, warmProxy);
    await curlBlob(warmProxy);
    const warm: number[] = [];
    const directAgain: number[] = [];
    const blobDirect: number[] = [];
    const blobWarm: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      directAgain.push(await skopeo(`${registry}/bench/big:1`));
      warm.push(await skopeo(image.ref, warmProxy));
      const d = await curlBlob();
      blobDirect.push(d.bytes! / d.seconds / MB);
      const w = await curlBlob(warmProxy);
      blobWarm.push(w.bytes! / w.seconds / MB);
    }
    await warmProxy.stop();

    const concurrentWarm = async (clients: number) => {
      log(`${clients} clients pull the image at once (warm cache, fresh process): aggregate throughput and peak RSS`);
      const proxy = env.regcache("warm", ["--log-level", "info"]);
      await proxy.start();
      const dests = Array.from({ length: clients }, (_, i) => env.path(`concurrent-${i}`));
      const seconds = await timed(() =>
        Promise.all(
          dests.map((d) => {
            rmSync(d, { recursive: true, force: true });
            return exec("skopeo", ["--insecure-policy", "copy", "--retry-times", "0", `docker://${image.ref}`, `dir:${d}`], { env: goClientEnv(proxy), maxBuffer: 64 * MB });
          }),
        ),
      );
      const peakRssMB = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${proxy.pid}/status`, "utf8"))![1]) / 1024;
      await proxy.stop();
      for (const d of dests) rmSync(d, { recursive: true, force: true });
      return { clients, seconds, aggregateMBps: (clients * imageMbTotal) / seconds, peakRssMB };
    };
    const imageMbTotal = IMAGE_LAYERS.reduce((a, b) => a + b, 0) / MB;
    const warm8 = await concurrentWarm(CONCURRENT);
    const warm32 = await concurrentWarm(32);

    log("16 clients pull the image at once into an empty cache: wall time and upstream GETs per blob");
    const coldProxy = quietProxy("cold-16");
    await coldProxy.start();
    env.registry.clearLog();
    const cold16Seconds = await timed(() =>
      settleAll(coldProxy,
        Array.from({ length: 16 }, (_, i) => {
          const d = env.path(`cold16-${i}`);
          return exec("skopeo", ["--insecure-policy", "copy", "--retry-times", "0", `docker://${image.ref}`, `dir:${d}`], { env: goClientEnv(coldProxy), maxBuffer: 64 * MB });
        }),
      ),
    );
    const getsPerBlob = image.layerDigests.map((d) => env.registry.blobGets(d).length);
    await coldProxy.stop();
    for (let i = 0; i < 16; i++) rmSync(env.path(`cold16-${i}`), { recursive: true, force: true });

    log("TLS handshakes through CONNECT: 200 new host names against one known host");
    const handshakeProxy = quietProxy("handshakes");
    await handshakeProxy.start();
    const ca = readFileSync(handshakeProxy.caFile, "utf8");
    const handshake = async (host: string): Promise<number> => {
      const started = performance.now();
      const tls = await tlsThroughProxy(handshakeProxy.port, host, ca);
      const ms = performance.now() - started;
      tls.destroy();
      return ms;
    };
    await handshake("known.bench.test");
    const knownMs: number[] = [];
    const newMs: number[] = [];
    for (let i = 0; i < 200; i++) {
      knownMs.push(await handshake("known.bench.test"));
      newMs.push(await handshake(`host-${i}.bench.test`));
    }

    log("manifest HEADs on one kept-alive connection (cached manifest)");
    await skopeo(image.ref, handshakeProxy);
    const tls = await tlsThroughProxy(handshakeProxy.port, "quay.test", ca);
    const headPath = `/v2/bench/big/manifests/${image.topDigest}`;
    if ((await head(tls, "quay.test", headPath)) !== 200) throw new Error("manifest HEAD did not answer 200");
    const headMs: number[] = [];
    const headsStarted = performance.now();
    for (let i = 0; i < 2000; i++) {
      const started = performance.now();
      await head(tls, "quay.test", headPath);
      headMs.push(performance.now() - started);
    }
    const headsPerSecond = 2000 / ((performance.now() - headsStarted) / 1000);
    tls.destroy();
    await handshakeProxy.stop();

    const imageMb = IMAGE_LAYERS.reduce((a, b) => a + b, 0) / MB;
    const summaries: Record<string, Summary> = {
      directPullSeconds: summarize([...direct, ...directAgain]),
      coldPullSeconds: summarize(cold),
      warmPullSeconds: summarize(warm),
      directBlobMBps: summarize(blobDirect),
      warmBlobMBps: summarize(blobWarm),
    };
    const ratios = {
      warmPullVsDirect: summaries.warmPullSeconds!.median / summaries.directPullSeconds!.median,
      coldPullVsDirect: summaries.coldPullSeconds!.median / summaries.directPullSeconds!.median,
      warmBlobThroughputVsDirect: summaries.warmBlobMBps!.median / summaries.directBlobMBps!.median,
    };
    Object.assign(results, {
      date: new Date().toISOString(),
      machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version },
      runs: RUNS,
      imageMB: imageMb,
      blobMB: BLOB_SIZE / MB,
      summaries,
      ratios,
      concurrentWarm: [warm8, warm32],
      concurrentCold: { clients: 16, seconds: cold16Seconds, upstreamGetsPerBlob: getsPerBlob },
      handshakes: { knownP50Ms: percentile(knownMs, 50), knownP99Ms: percentile(knownMs, 99), newHostP50Ms: percentile(newMs, 50), newHostP99Ms: percentile(newMs, 99) },
      manifestHeads: { perSecond: headsPerSecond, p50Ms: percentile(headMs, 50), p99Ms: percentile(headMs, 99) },
      targets: {
        warmPullVsDirect: { target: "<= 1.0", met: ratios.warmPullVsDirect <= 1.0 },
        coldPullVsDirect: { target: "<= 1.15", met: ratios.coldPullVsDirect <= 1.15 },
        warmBlobThroughputVsDirect: { target: ">= 1.3", met: ratios.warmBlobThroughputVsDirect >= 1.3 },
        peakRssMB8: { target: "< 150", met: warm8.peakRssMB < 150 },
        peakRssMB32: { target: "<= 150", met: warm32.peakRssMB <= 150 },
        oneUpstreamGetPerBlob: { target: "exactly 1", met: getsPerBlob.every((n) => n === 1) },
        newHostHandshakeP50: { target: "<= 5 ms above a known host", met: percentile(newMs, 50) - percentile(knownMs, 50) <= 5 },
      },
    });
    const fmt = (s: Summary, digits = 2) => `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}–${s.max.toFixed(digits)})`;
    const table = [
      `| measurement (median of ${RUNS}, min–max) | direct from distribution | through regcache | ratio | target |`,
      "| --- | --- | --- | --- | --- |",
      `| cold pull, ${imageMb} MB / 3 layers (s) | ${fmt(summaries.directPullSeconds!)} | ${fmt(summaries.coldPullSeconds!)} | ${ratios.coldPullVsDirect.toFixed(2)} | ≤ 1.15 |`,
      `| warm pull, ${imageMb} MB / 3 layers (s) | ${fmt(summaries.directPullSeconds!)} | ${fmt(summaries.warmPullSeconds!)} | ${ratios.warmPullVsDirect.toFixed(2)} | ≤ 1.0 |`,
      `| warm ${BLOB_SIZE / MB} MB blob, curl (MB/s) | ${fmt(summaries.directBlobMBps!, 0)} | ${fmt(summaries.warmBlobMBps!, 0)} | ${ratios.warmBlobThroughputVsDirect.toFixed(2)} | ≥ 1.3 |`,
      ...[warm8, warm32].map((w) => `| ${w.clients} concurrent warm pulls: aggregate MB/s, peak RSS | | ${w.aggregateMBps.toFixed(0)} MB/s, ${w.peakRssMB.toFixed(0)} MB | | RSS ≤ 150 MB |`),
      `| 16 concurrent cold pulls: wall time, upstream GETs per layer | | ${cold16Seconds.toFixed(1)} s, ${getsPerBlob.join("/")} | | exactly 1 |`,
      `| TLS handshake via CONNECT, p50 / p99 (ms) | known host ${percentile(knownMs, 50).toFixed(1)} / ${percentile(knownMs, 99).toFixed(1)} | 200 new hosts ${percentile(newMs, 50).toFixed(1)} / ${percentile(newMs, 99).toFixed(1)} | +${(percentile(newMs, 50) - percentile(knownMs, 50)).toFixed(1)} ms | ≤ +5 ms |`,
      `| cached manifest HEADs, one keep-alive connection | | ${headsPerSecond.toFixed(0)}/s, p99 ${percentile(headMs, 99).toFixed(2)} ms | | |`,
    ].join("\n");
    const dir = path.join(REPO_ROOT, "bench", "results");
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, "latest.json"), `${JSON.stringify(results, null, 2)}\n`);
    writeFileSync(path.join(dir, "latest.md"), `${table}\n`);
    process.stdout.write(`${table}\n\np99 direct pull: ${percentile([...direct, ...directAgain], 99).toFixed(2)} s\n`);
  } finally {
    await env.cleanup();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
