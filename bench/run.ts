/**
 * regcache benchmark, side by side with the peers a user would otherwise choose, all in one run
 * on loopback: pulling directly from the registry (Debian's docker-registry, distribution),
 * distribution's pull-through cache (`proxy: remoteurl:`) and squid ssl-bump with a blob cache.
 * Also the CPU each path a blob takes costs per GB beside bare-Node references (fill-cpu.ts), and
 * small requests against distribution (small-requests.ts). Prints one table of medians, spread and
 * ratios; writes bench/results/latest.json and bench/results/latest.md (docs/performance.md's
 * table, with how it was measured).
 *
 *   npm run bench                 (BENCH_RUNS=5 by default; BENCH_SCALE=0.1 for a quick smoke run)
 *
 * Handshakes are timed on this Node.js and on Node 24 (the Docker image's runtime), which
 * `.ci/install-test-deps.sh --bench` unpacks beside it.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createSecureContext, type TLSSocket } from "node:tls";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { goClientEnv, type ProxyEnv } from "../test/e2e/harness/clients.js";
import { exchange, tlsDirect, tlsThroughProxy } from "../test/e2e/harness/raw-http.js";
import { REGISTRY_HOST, TestEnvironment } from "../test/e2e/harness/environment.js";
import { REPO_ROOT, type RegcacheProcess } from "../test/e2e/harness/regcache-process.js";
import { freePort, waitFor } from "../test/e2e/harness/ports.js";
import { rankMembers } from "../src/cluster/rendezvous.js";
import { loadOrCreateCa } from "../src/tls/ca.js";
import { LeafMinter } from "../src/tls/leaf-minter.js";
import { TestHaproxy } from "../test/e2e/harness/haproxy.js";
import { TestRegistry } from "../test/e2e/harness/registry.js";
import { NODE_24 } from "../test/e2e/harness/tools.js";
import { peerArgs, startCeiling } from "./bench-processes.js";
import { fillCpuRatios, fillCpuRows, measureFillCpu, pushBlob } from "./fill-cpu.js";
import { measureSharedTierReads } from "./fleet.js";
import { SquidSslBump } from "./squid.js";
import { percentile, summarize, type Summary } from "./stats.js";
import { measureSmallRequests, primeSmallRequests, smallRequestRows, smallRequestTarget } from "./small-requests.js";

const exec = promisify(execFile);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const SCALE = Number(process.env.BENCH_SCALE ?? 1);
const MB = 1_000_000;
const IMAGE_LAYERS = [150, 120, 80].map((m) => Math.round(m * MB * SCALE));
const IMAGE_MB = IMAGE_LAYERS.reduce((a, b) => a + b, 0) / MB;
const BLOB_SIZE = Math.round(200 * MB * SCALE);
/** How long each small-request measurement runs. */
const SMALL_SECONDS = Number(process.env.BENCH_SECONDS ?? 3);

/** How a client reaches the registry: through a proxy whose CA it trusts, or directly (undefined). */
type Route = ProxyEnv | undefined;

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

function peakRssMB(pid: number): number {
  return Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024;
}

function rssMB(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024;
}

async function main(): Promise<void> {
  const env = new TestEnvironment("bench");
  try {
    await env.start();
    log(`pushing a ${IMAGE_MB} MB image and a ${BLOB_SIZE / MB} MB blob`);
    const image = await env.pushImage("bench/big", "1", IMAGE_LAYERS);
    const blobImage = await env.pushImage("bench/blob", "1", [BLOB_SIZE]);
    const blob = blobImage.layerDigests[0]!;
    const registry = env.registry.url;

    const skopeo = (source: string, dest: string, route: Route) => {
      rmSync(dest, { recursive: true, force: true });
      const args = ["--insecure-policy", "copy", "--retry-times", "0", "--src-cert-dir", env.pki.certDir, `docker://${source}`, `dir:${dest}`];
      const envVars = route ? goClientEnv(route) : { ...process.env, HTTPS_PROXY: "", https_proxy: "" };
      return exec("skopeo", args, { env: envVars, maxBuffer: 64 * MB });
    };
    const pullDest = env.path("pull-dest");
    const timedPull = (source: string, route: Route) => timed(() => skopeo(source, pullDest, route));
    /** curl's own figure for one download of the whole blob (`blobBytes`), in MB/s. */
    const curlBlob = async (url: string, route: Route): Promise<number> => {
      const via = route ? ["-x", route.proxyUrl, "--cacert", route.caFile] : ["--noproxy", "*", "--cacert", env.pki.caCert];
      const { stdout } = await exec("curl", ["-sf", "-o", "/dev/null", "-w", "%{time_total} %{size_download}", ...via, url]);
      const [seconds, bytes] = stdout.trim().split(" ").map(Number);
      if (bytes !== blobBytes) throw new Error(`curl got ${bytes} bytes of ${blobBytes} from ${url}`);
      return bytes / seconds! / MB;
    };
    const quietProxy = (name: string): RegcacheProcess => env.regcache(name, ["--log-level", "info"]);
    const direct: Route = undefined;
    const pullThrough = (name: string) =>
      new TestRegistry({ dir: env.path(`pull-through-${name}`), pki: env.pki, proxyRemoteUrl: `https://${registry}` });

    log("cold pulls: direct, a fresh regcache, a fresh distribution pull-through cache, in turn");
    const directPull: number[] = [];
    const coldPull: number[] = [];
    const coldPullThrough: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      directPull.push(await timedPull(`${registry}/bench/big:1`, direct));
      const proxy = quietProxy(`cold-${i}`);
      await proxy.start();
      coldPull.push(await timedPull(image.ref, proxy));
      await proxy.stop();
      rmSync(proxy.dataDir, { recursive: true, force: true });
      const peer = pullThrough(`cold-${i}`);
      await peer.start();
      coldPullThrough.push(await timedPull(`${peer.url}/bench/big:1`, direct));
      await peer.stop();
      rmSync(env.path(`pull-through-cold-${i}`), { recursive: true, force: true });
    }

    log("warm pulls: direct, regcache and the pull-through cache, each already holding the image");
    const warmProxy = quietProxy("warm");
    await warmProxy.start();
    await timedPull(image.ref, warmProxy);
    const warmPeer = pullThrough("warm");
    await warmPeer.start();
    await timedPull(`${warmPeer.url}/bench/big:1`, direct);
    const warmPull: number[] = [];
    const warmPullThrough: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      directPull.push(await timedPull(`${registry}/bench/big:1`, direct));
      warmPull.push(await timedPull(image.ref, warmProxy));
      warmPullThrough.push(await timedPull(`${warmPeer.url}/bench/big:1`, direct));
    }
    await warmPeer.stop();

    log("warm blob with curl: direct, regcache, squid ssl-bump and a bare node:https server (the ceiling), each already holding the blob");
    const squid = new SquidSslBump({ hosts: [REGISTRY_HOST], upstreamCaFile: env.pki.caCert });
    await squid.start();
    const blobPath = `/v2/bench/blob/blobs/${blob}`;
    const { stdout: blobHead } = await exec("curl", ["-sfI", "--noproxy", "*", "--cacert", env.pki.caCert, `https://${registry}${blobPath}`]);
    const blobBytes = Number(/content-length:\s*(\d+)/i.exec(blobHead)![1]);
    const regcacheBlobUrl = `https://${REGISTRY_HOST}${blobPath}`;
    const squidBlobUrl = `https://${REGISTRY_HOST}:${env.registry.port}${blobPath}`;
    await curlBlob(regcacheBlobUrl, warmProxy);
    await curlBlob(squidBlobUrl, squid);
    const blobFile = env.path("ceiling-blob");
    await exec("curl", ["-sf", "-o", blobFile, "--noproxy", "*", "--cacert", env.pki.caCert, `https://${registry}${blobPath}`]);
    const ceiling = await startCeiling(blobFile, env.pki.serverKey, env.pki.serverCert);
    await curlBlob(ceiling.url, direct);
    const blobDirect: number[] = [];
    const blobWarm: number[] = [];
    const blobSquid: number[] = [];
    const blobCeiling: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      blobDirect.push(await curlBlob(`https://${registry}${blobPath}`, direct));
      blobWarm.push(await curlBlob(regcacheBlobUrl, warmProxy));
      blobSquid.push(await curlBlob(squidBlobUrl, squid));
      blobCeiling.push(await curlBlob(ceiling.url, direct));
    }
    ceiling.stop();
    log("warm blob, first read after a restart: hashed while served (issue 14), against a file verified this run");
    const blobAfterRestart: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      await warmProxy.stop();
      await warmProxy.start();
      blobAfterRestart.push(await curlBlob(regcacheBlobUrl, warmProxy));
    }
    const squidCodes = squid.resultCodes(blob);
    const squidHits = squidCodes.filter((code) => code.includes("HIT")).length;
    log(`squid result codes for the blob: ${squidCodes.join(" ")}`);
    await squid.stop();
    await warmProxy.stop();

    log("CPU per GB of each path a blob takes, per regcache process, beside a bare-Node hit (the ceiling) and a bare-Node fill (the fill reference)");
    const warmupBlob = await pushBlob(env, "bench/warmup", 20 * SCALE);
    const twinBlob = await pushBlob(env, "bench/twin", blobBytes / 1_000_000);
    const fillCpu = await measureFillCpu(env, { repo: "bench/blob", digest: blob, bytes: blobBytes }, twinBlob, warmupBlob, blobFile, RUNS, log);
    const cpu = fillCpuRatios(fillCpu);

    log("an image whose blobs are all cached from another repository: upstream GETs and HEADs (repository links)");
    const linkProxy = quietProxy("links");
    await linkProxy.start();
    await timedPull(image.ref, linkProxy);
    const crossRepo: { seconds: number; blobGets: number; blobHeads: number }[] = [];
    for (let i = 0; i < RUNS; i++) {
      await exec("skopeo", ["--insecure-policy", "copy", "--src-cert-dir", env.pki.certDir, "--dest-cert-dir", env.pki.certDir, `docker://${registry}/bench/big:1`, `docker://${registry}/bench/mirror-${i}:1`], {
        env: { ...process.env, HTTPS_PROXY: "", https_proxy: "" },
      });
      env.registry.clearLog();
      const seconds = await timedPull(`${REGISTRY_HOST}/bench/mirror-${i}:1`, linkProxy);
      const blobLines = env.registry.accessLog.filter((e) => e.path.includes(`/bench/mirror-${i}/blobs/`));
      crossRepo.push({ seconds, blobGets: blobLines.filter((e) => e.method === "GET").length, blobHeads: blobLines.filter((e) => e.method === "HEAD").length });
    }
    await linkProxy.stop();

    log("two replicas as one cache: a warm blob through the replica that lacks it (from its peer), then again (local)");
    const peerPorts = [await freePort(), await freePort()];
    const replicaArgs = (i: number) => ["--log-level", "info", ...peerArgs(peerPorts, i)];
    const owner = rankMembers(blob, peerPorts.map((p) => `127.0.0.1:${p}`))[0] === `127.0.0.1:${peerPorts[0]}` ? 0 : 1;
    const holder = env.regcache(`replica-${owner}`, replicaArgs(owner));
    await holder.start();
    await curlBlob(regcacheBlobUrl, holder);
    const fromPeer: number[] = [];
    const afterPeer: number[] = [];
    const holderLocal: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const asker = env.regcache(`replica-${1 - owner}-${i}`, replicaArgs(1 - owner));
      await asker.start();
      await waitFor(() => asker.logs.some((l) => l.msg === "peer is live"), 15_000, "the replicas to see each other");
      fromPeer.push(await curlBlob(regcacheBlobUrl, asker));
      afterPeer.push(await curlBlob(regcacheBlobUrl, asker));
      holderLocal.push(await curlBlob(regcacheBlobUrl, holder));
      await asker.stop();
      rmSync(asker.dataDir, { recursive: true, force: true });
    }
    await holder.stop();

    log("a fleet sharing an object store and an index: a warm blob through a replica with an empty disk (from the store), then again (local)");
    const sharedReads = await measureSharedTierReads(env, RUNS, (proxy) => curlBlob(regcacheBlobUrl, proxy));

    log("cold pulls behind a balancer picking a replica per connection: three fresh replicas as one cache, against one fresh replica");
    const coldBehindBalancer = async (name: string, count: number): Promise<{ seconds: number; upstreamGetsPerBlob: number[] }> => {
      const ports = await Promise.all(Array.from({ length: count }, () => freePort()));
      const replicas = ports.map((_, i) => env.regcache(`${name}-${i}`, ["--log-level", "info", ...(count > 1 ? peerArgs(ports, i) : [])]));
      for (const replica of replicas) await replica.start();
      await waitFor(() => replicas.every((r) => r.logs.filter((l) => l.msg === "peer is live").length >= count - 1), 15_000, "the replicas to see each other");
      const balancer = new TestHaproxy(env.dir, replicas.map((r) => r.port), "random");
      await balancer.start();
      env.registry.clearLog();
      const seconds = await timedPull(image.ref, { proxyUrl: balancer.proxyUrl, caFile: replicas[0]!.caFile });
      const upstreamGetsPerBlob = image.layerDigests.map((d) => env.registry.blobGets(d).length);
      await balancer.stop();
      for (const replica of replicas) {
        await replica.stop();
        rmSync(replica.dataDir, { recursive: true, force: true });
      }
      return { seconds, upstreamGetsPerBlob };
    };
    const singleCold: number[] = [];
    const clusterCold: { seconds: number; upstreamGetsPerBlob: number[] }[] = [];
    for (let i = 0; i < RUNS; i++) {
      singleCold.push((await coldBehindBalancer(`cold-single-${i}`, 1)).seconds);
      clusterCold.push(await coldBehindBalancer(`cold-cluster-${i}`, 3));
    }

    const concurrentWarm = async (clients: number) => {
      log(`${clients} clients pull the image at once (warm cache, fresh process), then ${clients} directly from the registry: aggregate throughput and peak RSS`);
      const proxy = quietProxy("warm");
      await proxy.start();
      const dests = Array.from({ length: clients }, (_, i) => env.path(`concurrent-${i}`));
      const clearDests = () => dests.forEach((d) => rmSync(d, { recursive: true, force: true }));
      const seconds = await timed(() => settleAll(proxy, dests.map((d) => skopeo(image.ref, d, proxy))));
      const rss = peakRssMB(proxy.pid!);
      await proxy.stop();
      clearDests();
      const directSeconds = await timed(() => Promise.all(dests.map((d) => skopeo(`${registry}/bench/big:1`, d, direct))));
      clearDests();
      return { clients, seconds, aggregateMBps: (clients * IMAGE_MB) / seconds, directAggregateMBps: (clients * IMAGE_MB) / directSeconds, peakRssMB: rss };
    };
    const warm8 = await concurrentWarm(8);
    const warm32 = await concurrentWarm(32);

    log("16 clients pull the image at once into an empty cache: wall time and upstream GETs per blob");
    const coldProxy = quietProxy("cold-16");
    await coldProxy.start();
    env.registry.clearLog();
    const cold16Dests = Array.from({ length: 16 }, (_, i) => env.path(`cold16-${i}`));
    const cold16Seconds = await timed(() => settleAll(coldProxy, cold16Dests.map((d) => skopeo(image.ref, d, coldProxy))));
    const getsPerBlob = image.layerDigests.map((d) => env.registry.blobGets(d).length);
    await coldProxy.stop();
    for (const d of cold16Dests) rmSync(d, { recursive: true, force: true });

    /**
     * p50/p99 of CONNECT + TLS handshake for a known host and for 200 new host names, on the given
     * Node.js, beside the baseline: a TCP connect + handshake to a bare node:https server on the same
     * Node.js with a leaf of the same kind (ECDSA P-256, chained to the root), from the same client.
     */
    const measureHandshakes = async (node: string) => {
      const proxy = env.regcache("handshakes", ["--log-level", "info"], { node });
      await proxy.start();
      const leaf = await new LeafMinter(await loadOrCreateCa(proxy.certsDir)).leafFor("baseline.bench.test");
      writeFileSync(env.path("baseline.key"), leaf.keyPem);
      writeFileSync(env.path("baseline.crt"), leaf.chainPem);
      const baseline = await startCeiling(blobFile, env.path("baseline.key"), env.path("baseline.crt"), node);
      // Built once, as a client's TLS configuration is: the timing is the handshake's, not the client's set-up.
      const trust = createSecureContext({ ca: readFileSync(proxy.caFile, "utf8") });
      const timedTls = async (connect: () => Promise<TLSSocket>): Promise<number> => {
        const started = performance.now();
        const tls = await connect();
        const ms = performance.now() - started;
        tls.destroy();
        return ms;
      };
      const handshake = (host: string) => timedTls(() => tlsThroughProxy(proxy.port, `${host}:443`, host, trust));
      const bare = () => timedTls(() => tlsDirect(baseline.port, "127.0.0.1", "baseline.bench.test", trust));
      await handshake("known.bench.test");
      await bare();
      const knownMs: number[] = [];
      const newMs: number[] = [];
      const bareMs: number[] = [];
      for (let i = 0; i < 200; i++) {
        knownMs.push(await handshake("known.bench.test"));
        newMs.push(await handshake(`host-${i}.bench.test`));
        bareMs.push(await bare());
      }
      baseline.stop();
      await proxy.stop();
      const version = (await exec(node, ["--version"])).stdout.trim();
      return {
        node: version,
        bareP50Ms: percentile(bareMs, 50),
        knownP50Ms: percentile(knownMs, 50),
        knownP99Ms: percentile(knownMs, 99),
        newHostP50Ms: percentile(newMs, 50),
        newHostP99Ms: percentile(newMs, 99),
      };
    };
    log("TLS handshakes through CONNECT: 200 new host names against one known host, on this Node.js and on Node 24 (the image's)");
    const handshakeRuns = [await measureHandshakes(process.execPath)];
    if (existsSync(NODE_24)) handshakeRuns.push(await measureHandshakes(NODE_24));
    else log(`no Node 24 at ${NODE_24} (.ci/install-test-deps.sh --bench unpacks it): handshakes measured on ${process.version} only`);
    const handshakes = handshakeRuns[0]!;

    const manyHosts = Math.round(10_000 * SCALE);
    log(`${manyHosts} distinct host names, 16 at a time (CONNECT, handshake, GET /v2/): RSS after, against the same process idle`);
    const closedPort = await freePort();
    const hostNames = Array.from({ length: manyHosts }, (_, i) => `h${i}.many.test`);
    const manyProxy = env.regcache("many-hosts", ["--log-level", "info", ...hostNames.flatMap((h) => ["--resolve", `${h}:443=127.0.0.1:${closedPort}`])]);
    await manyProxy.start();
    const manyCa = createSecureContext({ ca: readFileSync(manyProxy.caFile, "utf8") });
    const idleRss = rssMB(manyProxy.pid!);
    let nextHost = 0;
    const manyStarted = performance.now();
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (nextHost < manyHosts) {
          const host = hostNames[nextHost++]!;
          await exchange(await tlsThroughProxy(manyProxy.port, `${host}:443`, host, manyCa), [{ method: "GET", path: "/v2/", host }]);
        }
      }),
    );
    const many = { hosts: manyHosts, seconds: (performance.now() - manyStarted) / 1000, idleRssMB: idleRss, rssAfterMB: rssMB(manyProxy.pid!), peakRssMB: peakRssMB(manyProxy.pid!) };
    await manyProxy.stop();

    log(`small requests, ${SMALL_SECONDS} s each: a cached manifest by digest (GET, HEAD; 1 and 16 connections) and a tag HEAD under --tag-ttl 0 (16 connections), direct and through regcache in turn`);
    const small = await primeSmallRequests(env);
    const smallRequests = await measureSmallRequests(env, small.proxy, small.image, RUNS, SMALL_SECONDS);
    await small.proxy.stop();

    const s = {
      directPullSeconds: summarize(directPull),
      coldPullSeconds: summarize(coldPull),
      coldPullThroughSeconds: summarize(coldPullThrough),
      warmPullSeconds: summarize(warmPull),
      warmPullThroughSeconds: summarize(warmPullThrough),
      directBlobMBps: summarize(blobDirect),
      warmBlobMBps: summarize(blobWarm),
      squidBlobMBps: summarize(blobSquid),
      ceilingBlobMBps: summarize(blobCeiling),
      blobAfterRestartMBps: summarize(blobAfterRestart),
      crossRepoPullSeconds: summarize(crossRepo.map((c) => c.seconds)),
      blobFromPeerMBps: summarize(fromPeer),
      blobAfterPeerMBps: summarize(afterPeer),
      blobHolderLocalMBps: summarize(holderLocal),
      singleColdPullBalancedSeconds: summarize(singleCold),
      clusterColdPullSeconds: summarize(clusterCold.map((c) => c.seconds)),
      blobFromStoreMBps: summarize(sharedReads.fromStore),
      blobAfterStoreMBps: summarize(sharedReads.localAfter),
    } satisfies Record<string, Summary>;
    const ratios = {
      warmBlobVsDirect: s.warmBlobMBps.median / s.directBlobMBps.median,
      warmBlobVsSquid: s.warmBlobMBps.median / s.squidBlobMBps.median,
      warmBlobVsCeiling: s.warmBlobMBps.median / s.ceilingBlobMBps.median,
      warmPullVsDirect: s.warmPullSeconds.median / s.directPullSeconds.median,
      coldPullVsDirect: s.coldPullSeconds.median / s.directPullSeconds.median,
      coldPullVsPullThrough: s.coldPullSeconds.median / s.coldPullThroughSeconds.median,
      warmPullVsPullThrough: s.warmPullSeconds.median / s.warmPullThroughSeconds.median,
      blobAfterRestartVsVerified: s.blobAfterRestartMBps.median / s.warmBlobMBps.median,
      blobFromPeerVsLocal: s.blobFromPeerMBps.median / s.blobHolderLocalMBps.median,
      blobAfterPeerVsLocal: s.blobAfterPeerMBps.median / s.blobHolderLocalMBps.median,
      clusterColdVsSingle: s.clusterColdPullSeconds.median / s.singleColdPullBalancedSeconds.median,
      blobFromStoreVsLocal: s.blobFromStoreMBps.median / s.blobAfterStoreMBps.median,
      blobAfterStoreVsWarm: s.blobAfterStoreMBps.median / s.warmBlobMBps.median,
    };
    const newHostExtraMs = handshakes.newHostP50Ms - handshakes.knownP50Ms;
    const targets = {
      warmBlobVsDirect: { target: "≥ 1.3", met: ratios.warmBlobVsDirect >= 1.3 },
      warmBlobVsSquid: { target: "≥ 2", met: ratios.warmBlobVsSquid >= 2 },
      warmBlobVsCeiling: { target: "≥ 0.9", met: ratios.warmBlobVsCeiling >= 0.9 },
      warmPullVsDirect: { target: "≤ 1.0", met: ratios.warmPullVsDirect <= 1.0 },
      coldPullVsDirect: { target: "≤ 1.15", met: ratios.coldPullVsDirect <= 1.15 },
      coldPullVsPullThrough: { target: "≤ 0.7", met: ratios.coldPullVsPullThrough <= 0.7 },
      peakRssMB32: { target: "≤ 150 MB", met: warm32.peakRssMB <= 150 },
      newHostHandshakeP50: { target: "≤ +1 ms", met: newHostExtraMs <= 1 },
      knownHostHandshakeP50: { target: "≤ 3 ms", met: handshakes.knownP50Ms <= 3 },
      manyHostsPeakRss: { target: "≤ 200 MB", met: many.peakRssMB <= 200 },
      oneUpstreamGetPerBlob: { target: "exactly 1", met: getsPerBlob.every((n) => n === 1) },
      crossRepoNoBlobGets: { target: "0 GETs, ≤ 1 HEAD per blob", met: crossRepo.every((c) => c.blobGets === 0 && c.blobHeads <= image.allDigests.length) },
      blobFromPeerVsLocal: { target: "≥ 0.8", met: ratios.blobFromPeerVsLocal >= 0.8 },
      clusterColdVsSingle: { target: "≤ 1.1", met: ratios.clusterColdVsSingle <= 1.1 },
      blobFromStoreVsLocal: { target: "≥ 0.5", met: ratios.blobFromStoreVsLocal >= 0.5 },
      blobAfterStoreVsWarm: { target: "≥ 0.95 (unchanged)", met: ratios.blobAfterStoreVsWarm >= 0.95 },
      ...Object.fromEntries(Object.entries(cpu.targets).map(([key, t]) => [`cpu.${key}`, t])),
      ...Object.fromEntries(smallRequests.map((r) => [`small.${r.label}`, smallRequestTarget(r)])),
    };
    const results = {
      date: new Date().toISOString(),
      machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version },
      runs: RUNS,
      imageMB: IMAGE_MB,
      blobMB: BLOB_SIZE / MB,
      summaries: s,
      ratios,
      squid: { resultCodes: squidCodes, hits: squidHits },
      concurrentWarm: [warm8, warm32],
      concurrentCold: { clients: 16, seconds: cold16Seconds, upstreamGetsPerBlob: getsPerBlob },
      crossRepo,
      clusterCold,
      handshakes: handshakeRuns,
      manyHosts: many,
      cpuPerGb: fillCpu,
      cpuRatios: cpu.ratios,
      cpuUserRatios: cpu.userRatios,
      smallRequests,
      targets,
    };

    const fmt = (x: Summary, digits = 2) => `${x.median.toFixed(digits)} (${x.min.toFixed(digits)}–${x.max.toFixed(digits)})`;
    const verdict = (t: { target: string; met: boolean }) => `${t.target}: ${t.met ? "met" : "**not met**"}`;
    const ratio = (x: number) => x.toFixed(2);
    const table = [
      `| measurement (median of ${RUNS}, min–max) | direct from distribution | distribution pull-through | squid ssl-bump | regcache | regcache ratios | targets |`,
      "| --- | --- | --- | --- | --- | --- | --- |",
      `| warm ${BLOB_SIZE / MB} MB blob, curl (MB/s) | ${fmt(s.directBlobMBps, 0)} | | ${fmt(s.squidBlobMBps, 0)} | ${fmt(s.warmBlobMBps, 0)} | ${ratio(ratios.warmBlobVsDirect)}× direct, ${ratio(ratios.warmBlobVsSquid)}× squid, ${ratio(ratios.warmBlobVsCeiling)}× the ceiling | ${verdict(targets.warmBlobVsDirect)}; ${verdict(targets.warmBlobVsSquid)}; ${verdict(targets.warmBlobVsCeiling)} of the ceiling |`,
      `| the ceiling: a bare node:https server streaming the same file from disk, curl (MB/s) | | | | ${fmt(s.ceilingBlobMBps, 0)} | | |`,
      `| cold pull, ${IMAGE_MB} MB / 3 layers, skopeo (s) | ${fmt(s.directPullSeconds)} | ${fmt(s.coldPullThroughSeconds)} | | ${fmt(s.coldPullSeconds)} | ${ratio(ratios.coldPullVsDirect)} of direct, ${ratio(ratios.coldPullVsPullThrough)} of pull-through | ${verdict(targets.coldPullVsDirect)}; ${verdict(targets.coldPullVsPullThrough)} |`,
      `| warm pull, ${IMAGE_MB} MB / 3 layers, skopeo (s) | ${fmt(s.directPullSeconds)} | ${fmt(s.warmPullThroughSeconds)} | | ${fmt(s.warmPullSeconds)} | ${ratio(ratios.warmPullVsDirect)} of direct, ${ratio(ratios.warmPullVsPullThrough)} of pull-through | ${verdict(targets.warmPullVsDirect)} |`,
      `| warm ${BLOB_SIZE / MB} MB blob, first read after a restart (hashed while served), curl (MB/s) | | | | ${fmt(s.blobAfterRestartMBps, 0)} | ${ratio(ratios.blobAfterRestartVsVerified)}× a verified file | |`,
      `| pull of an image whose blobs are cached from another repository (s); upstream blob GETs / HEADs | | | | ${fmt(s.crossRepoPullSeconds)}; ${crossRepo.map((c) => `${c.blobGets}/${c.blobHeads}`).join(", ")} | | ${verdict(targets.crossRepoNoBlobGets)} |`,
      `| warm blob through a replica that lacks it: from its peer, then local; the holder's local hit (MB/s) | | | | ${fmt(s.blobFromPeerMBps, 0)}, then ${fmt(s.blobAfterPeerMBps, 0)}; holder ${fmt(s.blobHolderLocalMBps, 0)} | ${ratio(ratios.blobFromPeerVsLocal)}× then ${ratio(ratios.blobAfterPeerVsLocal)}× local | ${verdict(targets.blobFromPeerVsLocal)} |`,
      `| cold pull through 3 fresh replicas as one cache, and through 1, behind a balancer (s); upstream GETs per layer | | | | ${fmt(s.clusterColdPullSeconds)} and ${fmt(s.singleColdPullBalancedSeconds)}; ${clusterCold.map((c) => c.upstreamGetsPerBlob.join("/")).join(", ")} | ${ratio(ratios.clusterColdVsSingle)}× one replica | ${verdict(targets.clusterColdVsSingle)} |`,
      `| warm blob through a fleet replica with an empty disk: from the object store (Swift s3api), then its local hit (MB/s) | | | | ${fmt(s.blobFromStoreMBps, 0)}, then ${fmt(s.blobAfterStoreMBps, 0)} | ${ratio(ratios.blobFromStoreVsLocal)}× local; the local hit ${ratio(ratios.blobAfterStoreVsWarm)}× a single replica's | ${verdict(targets.blobFromStoreVsLocal)}; ${verdict(targets.blobAfterStoreVsWarm)} |`,
      `| 8 concurrent warm pulls: aggregate MB/s, peak RSS | ${warm8.directAggregateMBps.toFixed(0)} MB/s | | | ${warm8.aggregateMBps.toFixed(0)} MB/s, ${warm8.peakRssMB.toFixed(0)} MB | ${ratio(warm8.aggregateMBps / warm8.directAggregateMBps)}× direct | |`,
      `| 32 concurrent warm pulls: aggregate MB/s, peak RSS | ${warm32.directAggregateMBps.toFixed(0)} MB/s | | | ${warm32.aggregateMBps.toFixed(0)} MB/s, ${warm32.peakRssMB.toFixed(0)} MB | ${ratio(warm32.aggregateMBps / warm32.directAggregateMBps)}× direct | ${verdict(targets.peakRssMB32)} |`,
      `| 16 concurrent cold pulls: wall time, upstream GETs per layer | | | | ${cold16Seconds.toFixed(1)} s, ${getsPerBlob.join("/")} | | ${verdict(targets.oneUpstreamGetPerBlob)} |`,
      ...handshakeRuns.map(
        (h, i) =>
          `| TLS handshake via CONNECT on ${h.node}, p50 / p99 (ms); baseline: TCP + handshake with a bare node:https server, p50 | | | | known host ${h.knownP50Ms.toFixed(1)} / ${h.knownP99Ms.toFixed(1)}; 200 new hosts ${h.newHostP50Ms.toFixed(1)} / ${h.newHostP99Ms.toFixed(1)}; baseline ${h.bareP50Ms.toFixed(1)} | new host +${(h.newHostP50Ms - h.knownP50Ms).toFixed(1)} ms; known host ${(h.knownP50Ms / h.bareP50Ms).toFixed(2)}× the baseline | ${i === 0 ? `${verdict(targets.newHostHandshakeP50)}; known host ${verdict(targets.knownHostHandshakeP50)}` : `≤ +1 ms: ${h.newHostP50Ms - h.knownP50Ms <= 1 ? "met" : "**not met**"}; known host ≤ 3 ms: ${h.knownP50Ms <= 3 ? "met" : "**not met**"}`} |`,
      ),
      `| ${many.hosts} distinct hosts, 16 at a time: RSS idle → after; peak (MB) | | | | ${many.idleRssMB.toFixed(0)} → ${many.rssAfterMB.toFixed(0)}; peak ${many.peakRssMB.toFixed(0)} (${many.seconds.toFixed(0)} s) | ${(many.peakRssMB / many.idleRssMB).toFixed(2)}× idle | ${verdict(targets.manyHostsPeakRss)} |`,
      ...fillCpuRows(fillCpu, RUNS),
      ...smallRequestRows(smallRequests, RUNS),
    ].join("\n");
    const dir = path.join(REPO_ROOT, "bench", "results");
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, "latest.json"), `${JSON.stringify(results, null, 2)}\n`);
    const notes = [
      `squid served ${squidHits} of ${squidCodes.length} blob requests from its cache (the first is its miss).`,
      "",
      `Made by \`npm run bench\` (BENCH_RUNS=${RUNS}) on ${results.machine.cpus} cores (${results.machine.cpuModel}), Node ${process.version}, everything on loopback; every ratio is of medians from this one run.`,
      "",
      "**CPU per GB** is the user and system time of each regcache process (all its threads) from `/proc/<pid>/stat`, from the start of one curl download of the blob until the process is quiet again (index write, fsync, replication and upload included), divided by the blob's size. Every process filled another blob first, so its JIT's warm-up is not counted. The references are bare Node on the same runtime: the ceiling (`bench/ceiling-server.ts`, a file streamed in 256 KiB reads) for a hit, and the fill reference (`bench/fill-reference-server.ts`: undici GET, SHA-256, chunks written to a file by writev as they queue, the client served from two reused 256 KiB buffers, then digest check, fsync and rename) for a fill. Where several replicas take part, each is listed and their sum compared. `npm run bench:cpu` runs this part alone.",
      `For the CPU-per-GB figures, ${fillCpu.pageReporting}: memory a VM hands back to its hypervisor costs ~1.5 CPU-s per GB of kernel time to whichever process writes into it next (bench/page-reporting.ts).`,
      "",
      "**Small requests** come from one undici client in the benchmark process over kept-alive connections (HEADs too: undici closes the connection after a HEAD unless asked not to), 3 s per measurement after 20 warm-up requests per connection, directly from distribution and through regcache in turn. The tag HEAD runs under `--tag-ttl 0` with its manifest cached, so every request is revalidated upstream; concurrent ones share one HEAD. The registry's access log counts the HEADs, regcache's log the groups (requests not marked `coalesced`). `npm run bench:requests` runs this part alone.",
    ];
    writeFileSync(path.join(dir, "latest.md"), `${table}\n\n${notes.join("\n")}\n`);
    process.stdout.write(`${table}\n`);
  } finally {
    await env.cleanup();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
