/**
 * CPU per GB of each path a blob takes through regcache, per regcache process (user + system time
 * from /proc, the background work of the fill included: index write, fsync, replication, upload),
 * beside two bare-Node references on this runtime: ceiling-server.ts for a hit and
 * fill-reference-server.ts for a fill. Every process has done one fill of another blob first, so
 * what is measured is a warm process's work, not its JIT's. The paths are interleaved run by run.
 */
import { execFile } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import { promisify } from "node:util";
import type { TestEnvironment } from "../test/e2e/harness/environment.js";
import { REGISTRY_HOST } from "../test/e2e/harness/environment.js";
import { fleetArgs } from "../test/e2e/harness/fleet-args.js";
import { freePort, waitFor } from "../test/e2e/harness/ports.js";
import { TestRedis } from "../test/e2e/harness/redis.js";
import type { RegcacheProcess } from "../test/e2e/harness/regcache-process.js";
import { TestSwift } from "../test/e2e/harness/swift.js";
import { rankMembers } from "../src/cluster/rendezvous.js";
import { peerArgs, startCeiling, startServerProcess } from "./bench-processes.js";
import { holdPageReporting } from "./page-reporting.js";
import { cpuOf, type CpuTime } from "./process-cpu.js";
import { summarize, type Summary } from "./stats.js";

const exec = promisify(execFile);

export interface BenchBlob {
  repo: string;
  digest: string;
  bytes: number;
}

/** Pushes a one-layer image of `megabytes` and says where its blob is and how large. */
export async function pushBlob(env: TestEnvironment, repo: string, megabytes: number): Promise<BenchBlob> {
  const image = await env.pushImage(repo, "1", [Math.round(megabytes * 1_000_000)]);
  const digest = image.layerDigests[0]!;
  const { stdout } = await exec("curl", ["-sfI", "--noproxy", "*", "--cacert", env.pki.caCert, `https://${env.registry.url}/v2/${repo}/blobs/${digest}`]);
  return { repo, digest, bytes: Number(/content-length:\s*(\d+)/i.exec(stdout)![1]) };
}

/** Downloads a blob with curl (`route`: how to reach it) and checks that all its bytes came. */
export async function curlBlob(target: string, route: string[], b: BenchBlob): Promise<void> {
  const { stdout } = await exec("curl", ["-sf", "-o", "/dev/null", "-w", "%{size_download}", ...route, target]);
  if (Number(stdout) !== b.bytes) throw new Error(`curl got ${stdout} bytes of ${b.bytes} from ${target}`);
}

/** Downloads a blob from the registry through a regcache, as a client would. */
export function throughRegcache(proxy: RegcacheProcess, b: BenchBlob): Promise<void> {
  return curlBlob(`https://${REGISTRY_HOST}/v2/${b.repo}/blobs/${b.digest}`, ["-x", proxy.proxyUrl, "--cacert", proxy.caFile], b);
}

/** How many uploads to the object store a fleet replica has finished (its stats API). */
export async function uploadsDone(proxy: RegcacheProcess): Promise<number> {
  return ((await (await fetch(`${proxy.proxyUrl}/api/stats`)).json()) as { shared: { uploads: { uploaded: number } } }).shared.uploads.uploaded;
}

/**
 * One path: CPU-s per GB of each process that took part, and of them all together; `user`: their
 * user time alone, regcache's own code and Node's, without the kernel's share (socket and file
 * copies, and the writeback of dirty pages that an fsync does itself, or the kernel's flusher
 * threads do for nobody's account, depending on timing).
 */
export interface CpuPath {
  label: string;
  processes: Record<string, Summary>;
  total: Summary;
  user: Summary;
}

export interface FillCpuResult {
  /** How the machine's free page reporting was set for the run (page-reporting.ts). */
  pageReporting: string;
  ceiling: CpuPath;
  hit: CpuPath;
  reference: CpuPath;
  cold: CpuPath;
  /** Two cold fills at once through two replicas: what two fills cost on these cores together. */
  pair: CpuPath;
  peer: CpuPath;
  cluster: CpuPath;
  storeRead: CpuPath;
  fleetFill: CpuPath;
}

/** Ratios of medians, and the issue's targets for them. */
export function fillCpuRatios(r: FillCpuResult) {
  const m = (p: CpuPath) => p.total.median;
  const ratios = {
    hitVsCeiling: m(r.hit) / m(r.ceiling),
    coldVsReference: m(r.cold) / m(r.reference),
    peerAskerVsCold: r.peer.processes.asker!.median / m(r.cold),
    clusterVsCold: m(r.cluster) / m(r.cold),
    pairVsCold: m(r.pair) / m(r.cold),
    clusterVsPair: m(r.cluster) / m(r.pair),
    storeReadVsCold: m(r.storeRead) / m(r.cold),
    fleetFillVsCold: m(r.fleetFill) / m(r.cold),
  };
  const u = (p: CpuPath) => p.user.median;
  const userRatios = {
    coldVsReference: u(r.cold) / u(r.reference),
    clusterVsCold: u(r.cluster) / u(r.cold),
    storeReadVsCold: u(r.storeRead) / u(r.cold),
    fleetFillVsCold: u(r.fleetFill) / u(r.cold),
  };
  const targets = {
    coldVsReference: { target: "≤ 1.1× the fill reference", met: ratios.coldVsReference <= 1.1 },
    peerAskerVsCold: { target: "asker ≤ 1.1× a cold fill", met: ratios.peerAskerVsCold <= 1.1 },
    clusterVsCold: { target: "≤ 2.0× a cold fill", met: ratios.clusterVsCold <= 2.0 },
    // Two fills at once on shared cores cost more than twice one alone (pairVsCold): against them,
    // the cluster has the tolerance a peer fill has against a cold fill, for the same work.
    clusterVsPair: { target: "≤ 1.1× two cold fills at once", met: ratios.clusterVsPair <= 1.1 },
    storeReadVsCold: { target: "≤ 1.25× a cold fill", met: ratios.storeReadVsCold <= 1.25 },
    fleetFillVsCold: { target: "≤ 1.5× a cold fill", met: ratios.fleetFillVsCold <= 1.5 },
  };
  return { ratios, userRatios, targets };
}

/**
 * Measures every path `runs` times. `blob` is what is measured (hundreds of MB); `warmup` another
 * blob each process fills first; `twin` another blob of `blob`'s size, filled beside it by a second
 * replica at once; `blobFile` a copy of `blob` for the ceiling. Free page reporting
 * is held off meanwhile where the machine allows it (page-reporting.ts).
 */
export async function measureFillCpu(env: TestEnvironment, blob: BenchBlob, twin: BenchBlob, warmup: BenchBlob, blobFile: string, runs: number, log: (m: string) => void): Promise<FillCpuResult> {
  const gb = blob.bytes / 1e9;
  const direct = (target: string, b: BenchBlob) => curlBlob(target, ["--noproxy", "*", "--cacert", env.pki.caCert], b);
  const started: RegcacheProcess[] = [];
  const regcache = async (name: string, args: string[], envVars: Record<string, string> = {}): Promise<RegcacheProcess> => {
    const proxy = env.regcache(name, ["--log-level", "info", ...args], { env: envVars });
    await proxy.start();
    started.push(proxy);
    return proxy;
  };
  const retire = async (...proxies: RegcacheProcess[]): Promise<void> => {
    for (const proxy of proxies) {
      await proxy.stop();
      rmSync(proxy.dataDir, { recursive: true, force: true });
    }
  };
  const peersLive = (replicas: RegcacheProcess[]) =>
    waitFor(() => replicas.every((r) => r.logs.filter((l) => l.msg === "peer is live").length >= replicas.length - 1), 15_000, "the replicas to see each other");

  const samples = new Map<keyof FillCpuResult, { perGb: Record<string, number>; userPerGb: number }[]>();
  let stepStarted = Date.now();
  const record = (path: keyof FillCpuResult, names: string[], times: CpuTime[]) => {
    const fmt = (t: CpuTime) => `${((t.user + t.system) / gb).toFixed(2)} (user ${(t.user / gb).toFixed(2)})`;
    log(`  ${path}: ${times.map(fmt).join(" + ")} CPU-s per GB (${((Date.now() - stepStarted) / 1000).toFixed(0)} s)`);
    stepStarted = Date.now();
    const perGb: Record<string, number> = {};
    names.forEach((name, i) => (perGb[name] = (times[i]!.user + times[i]!.system) / gb));
    samples.set(path, [...(samples.get(path) ?? []), { perGb, userPerGb: times.reduce((sum, t) => sum + t.user, 0) / gb }]);
  };

  const reporting = holdPageReporting();
  log(reporting.said);
  const ceiling = await startCeiling(blobFile, env.pki.serverKey, env.pki.serverCert);
  const referenceDir = env.path("fill-reference");
  mkdirSync(referenceDir, { recursive: true });
  const reference = await startServerProcess("fill-reference-server.js", [`https://${env.registry.url}`, env.pki.caCert, env.pki.serverKey, env.pki.serverCert, referenceDir]);
  const referenceUrl = (b: BenchBlob) => `https://127.0.0.1:${reference.port}/v2/${b.repo}/blobs/${b.digest}`;
  const swift = new TestSwift(env.path("cpu-swift"));
  // One index for the store reads (it names the filler's uploads throughout), one emptied before each fleet fill.
  const readIndex = new TestRedis();
  const fillIndex = new TestRedis();
  await Promise.all([swift.start(), readIndex.start(), fillIndex.start()]);
  const fleetReplica = async (name: string, index: TestRedis, prefix: string) => regcache(name, fleetArgs(swift, index, await freePort(), prefix), swift.credentialsEnv);
  try {
    await direct(ceiling.url, blob);
    await direct(referenceUrl(warmup), warmup);
    const warm = await regcache("cpu-hit", []);
    for (const b of [warmup, blob, blob]) await throughRegcache(warm, b);

    const holderPorts = [await freePort(), await freePort()];
    const holderIndex = rankMembers(blob.digest, holderPorts.map((p) => `127.0.0.1:${p}`))[0] === `127.0.0.1:${holderPorts[0]}` ? 0 : 1;
    const holder = await regcache("cpu-holder", peerArgs(holderPorts, holderIndex));
    await throughRegcache(holder, blob);

    const filler = await fleetReplica("cpu-store-filler", readIndex, "cpu-store");
    for (const b of [warmup, blob]) await throughRegcache(filler, b);
    await waitFor(async () => (await uploadsDone(filler)) >= 2, 120_000, "the filler's uploads");
    await retire(filler);

    for (let i = 0; i < runs; i++) {
      log(`CPU per GB, run ${i + 1} of ${runs}: ceiling, hit, fill reference, cold fill, two cold fills at once, peer fill, cluster fill, store read, fleet fill`);
      record("ceiling", ["server"], await cpuOf([ceiling.pid], () => direct(ceiling.url, blob)));
      record("hit", ["regcache"], await cpuOf([warm.pid!], () => throughRegcache(warm, blob)));
      rmSync(referenceDir, { recursive: true, force: true });
      mkdirSync(referenceDir, { recursive: true });
      record("reference", ["server"], await cpuOf([reference.pid], () => direct(referenceUrl(blob), blob)));

      const cold = await regcache(`cpu-cold-${i}`, []);
      await throughRegcache(cold, warmup);
      record("cold", ["regcache"], await cpuOf([cold.pid!], () => throughRegcache(cold, blob)));
      await retire(cold);

      // A cluster fill is two fills running at once on these cores; so is this, without the cluster.
      const pair = [await regcache(`cpu-pair-${i}-0`, []), await regcache(`cpu-pair-${i}-1`, [])];
      for (const replica of pair) await throughRegcache(replica, warmup);
      record("pair", ["first", "second"], await cpuOf([pair[0]!.pid!, pair[1]!.pid!], () => Promise.all([throughRegcache(pair[0]!, blob), throughRegcache(pair[1]!, twin)])));
      await retire(...pair);

      const asker = await regcache(`cpu-asker-${i}`, peerArgs(holderPorts, 1 - holderIndex));
      await peersLive([holder, asker]);
      await throughRegcache(asker, warmup);
      record("peer", ["asker", "holder"], await cpuOf([asker.pid!, holder.pid!], () => throughRegcache(asker, blob)));
      await retire(asker);

      const ports = [await freePort(), await freePort(), await freePort()];
      const replicas: RegcacheProcess[] = [];
      for (let r = 0; r < 3; r++) replicas.push(await regcache(`cpu-cluster-${i}-${r}`, peerArgs(ports, r)));
      await peersLive(replicas);
      for (const replica of replicas) await throughRegcache(replica, warmup);
      // Ranked for the blob: the owner fills it; the client asks the replica ranked last, so the
      // replica ranked second (where a second copy goes) is a third process.
      const addresses = ports.map((p) => `127.0.0.1:${p}`);
      const ranked = rankMembers(blob.digest, addresses).map((a) => replicas[addresses.indexOf(a)]!);
      record("cluster", ["owner", "second", "asker"], await cpuOf(ranked.map((r) => r.pid!), () => throughRegcache(ranked[2]!, blob)));
      await retire(...replicas);

      const reader = await fleetReplica(`cpu-store-reader-${i}`, readIndex, "cpu-store");
      await throughRegcache(reader, warmup);
      record("storeRead", ["regcache"], await cpuOf([reader.pid!], () => throughRegcache(reader, blob)));
      await retire(reader);

      await fillIndex.restart();
      const fleetFiller = await fleetReplica(`cpu-fleet-fill-${i}`, fillIndex, `cpu-fill-${i}`);
      await throughRegcache(fleetFiller, warmup);
      await waitFor(async () => (await uploadsDone(fleetFiller)) >= 1, 120_000, "the warm-up blob's upload");
      record("fleetFill", ["regcache"], await cpuOf([fleetFiller.pid!], () => throughRegcache(fleetFiller, blob), async () => (await uploadsDone(fleetFiller)) >= 2));
      await retire(fleetFiller);
    }
  } finally {
    reporting.restore();
    ceiling.stop();
    reference.stop();
    for (const proxy of started) await proxy.stop().catch(() => undefined);
    await Promise.all([swift.stop(), readIndex.stop(), fillIndex.stop()]);
  }

  const path = (key: keyof FillCpuResult, label: string): CpuPath => {
    const runsOf = samples.get(key)!;
    const processes: Record<string, Summary> = {};
    for (const name of Object.keys(runsOf[0]!.perGb)) processes[name] = summarize(runsOf.map((r) => r.perGb[name]!));
    const total = summarize(runsOf.map((r) => Object.values(r.perGb).reduce((a, b) => a + b, 0)));
    return { label, processes, total, user: summarize(runsOf.map((r) => r.userPerGb)) };
  };
  return {
    pageReporting: reporting.said,
    ceiling: path("ceiling", "the hit ceiling: bare node:https file server (ceiling-server.ts)"),
    hit: path("hit", "local hit"),
    reference: path("reference", "the fill reference: bare Node GET → SHA-256 → batched writes → node:https (fill-reference-server.ts)"),
    cold: path("cold", "cold fill from upstream, one replica"),
    pair: path("pair", "two cold fills at once, one through each of two replicas (a blob of the same size each)"),
    peer: path("peer", "first read through a replica that gets it from its peer"),
    cluster: path("cluster", "cold fill through 3 replicas as one cache (asked: the one ranked last for the blob)"),
    storeRead: path("storeRead", "first read from the object store, empty local disk"),
    fleetFill: path("fleetFill", "cold fill with the shared tier, upload included"),
  };
}

/** Table rows (bench/run.ts's columns) for these figures. */
export function fillCpuRows(r: FillCpuResult, runs: number): string[] {
  const { ratios, userRatios, targets } = fillCpuRatios(r);
  const fmt = (s: Summary) => `${s.median.toFixed(2)} (${s.min.toFixed(2)}–${s.max.toFixed(2)})`;
  const figures = (p: CpuPath) => {
    const names = Object.keys(p.processes);
    const all = names.length === 1 ? fmt(p.total) : `${names.map((n) => `${n} ${fmt(p.processes[n]!)}`).join(" + ")} = ${fmt(p.total)}`;
    return `${all}; user time ${fmt(p.user)}`;
  };
  const user = (ratio: number) => `; user time ${ratio.toFixed(2)}×`;
  const verdict = (t: { target: string; met: boolean }) => `${t.target}: ${t.met ? "met" : "**not met**"}`;
  const row = (p: CpuPath, ratio: string, target = "") => `| CPU-s per GB, ${p.label}, median of ${runs} | | | | ${figures(p)} | ${ratio} | ${target} |`;
  return [
    row(r.ceiling, ""),
    row(r.hit, `${ratios.hitVsCeiling.toFixed(2)}× the ceiling`),
    row(r.reference, ""),
    row(r.cold, `${ratios.coldVsReference.toFixed(2)}× the fill reference${user(userRatios.coldVsReference)}`, verdict(targets.coldVsReference)),
    row(r.peer, `asker ${ratios.peerAskerVsCold.toFixed(2)}× a cold fill`, verdict(targets.peerAskerVsCold)),
    row(r.pair, `${ratios.pairVsCold.toFixed(2)}× a cold fill`),
    row(r.cluster, `${ratios.clusterVsCold.toFixed(2)}× a cold fill${user(userRatios.clusterVsCold)}; ${ratios.clusterVsPair.toFixed(2)}× two cold fills at once`, `${verdict(targets.clusterVsCold)}; ${verdict(targets.clusterVsPair)}`),
    row(r.storeRead, `${ratios.storeReadVsCold.toFixed(2)}× a cold fill${user(userRatios.storeReadVsCold)}`, verdict(targets.storeReadVsCold)),
    row(r.fleetFill, `${ratios.fleetFillVsCold.toFixed(2)}× a cold fill${user(userRatios.fleetFillVsCold)}`, verdict(targets.fleetFillVsCold)),
  ];
}
