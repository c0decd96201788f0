import { execFile } from "node:child_process";
import { rmSync, statSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { corruptBlobsInLayout, skopeoPull, TestContainerd, type SkopeoResult } from "./harness/clients.js";
import { TestEnvironment, type PushedImage } from "./harness/environment.js";
import { fleetArgs } from "./harness/fleet-args.js";
import { TestHaproxy } from "./harness/haproxy.js";
import { freePort, waitFor } from "./harness/ports.js";
import { TestRedis } from "./harness/redis.js";
import { CLI, type RegcacheProcess } from "./harness/regcache-process.js";
import { SWIFT_TOOLS, TestSwift } from "./harness/swift.js";
import { containerdUnavailable, missingTools } from "./harness/tools.js";

const exec = promisify(execFile);
const missing = missingTools("docker-registry", "skopeo", "openssl", "curl", "haproxy", "redis-server", ...SWIFT_TOOLS);

interface Stats {
  shared: { uploads: { uploaded: number; queued: number } };
  inFlight: { digest: string; bytes: number; size: number | null }[];
  peers: { members: { live: boolean }[] };
}

async function stats(r: RegcacheProcess): Promise<Stats> {
  return (await (await fetch(`${r.proxyUrl}/api/stats`)).json()) as Stats;
}

/**
 * Three replicas sharing Swift's S3 API and Redis that are also each other's peers (--peer, as
 * --peers-dns names them in deploy/kubernetes), behind haproxy picking a replica at random per
 * connection: the object store, a peer, or the upstream going away loses no pull.
 */
describe.skipIf(missing.length > 0)("a fleet whose replicas are also peers loses no pull to a backing service or a peer going away", () => {
  let env: TestEnvironment;
  let swift: TestSwift;
  let redis: TestRedis;
  let replicas: RegcacheProcess[];
  let peerPorts: number[];
  let haproxy: TestHaproxy;
  let images: PushedImage[];
  let huge: PushedImage;

  const front = () => ({ proxyUrl: haproxy.proxyUrl, caFile: path.join(env.path("certs"), "ca.crt") });
  /** Waits until every replica sees both others live. */
  const allLive = () => waitFor(async () => (await Promise.all(replicas.map(stats))).every((s) => s.peers.members.filter((m) => m.live).length === 2), 15_000, "every replica to see its two peers live");
  /** Restarts replica i on its port with its data dir emptied (a pod rescheduled), once the others see it again. */
  const restartEmpty = async (i: number): Promise<void> => {
    const r = replicas[i]!;
    const port = r.port;
    await r.stop("SIGKILL");
    rmSync(r.dataDir, { recursive: true, force: true });
    await r.start(port);
    await allLive();
  };
  /** Resolves once replica `r` has filled `fraction` of `digest`: its fill is then well under way. */
  const filling = (r: RegcacheProcess, digest: string, fraction: number) =>
    waitFor(async () => (await stats(r)).inFlight.some((d) => d.digest === digest && d.size !== null && d.bytes >= d.size * fraction), 60_000, "the fill to be under way");
  /**
   * Replica 1, restarted empty, pulls the large image; `kill` runs once the layer's fill is a fifth
   * done. The pull must succeed with right digests; what the replica logged of it is returned.
   */
  const pullCutMidStream = async (label: string, kill: () => Promise<void>) => {
    const layer = huge.layerDigests[0]!;
    await restartEmpty(1);
    env.registry.clearLog();
    const dest = env.path(label);
    const pull = skopeoPull(replicas[1]!, huge.ref, dest);
    await filling(replicas[1]!, layer, 0.2);
    await kill();
    const pulled = await pull;
    expect(pulled.ok, pulled.stderr).toBe(true);
    expect(corruptBlobsInLayout(dest).corrupt).toEqual([]);
    const r = replicas[1]!;
    return {
      layer,
      bytes: statSync(path.join(dest, "blobs", "sha256", layer.slice(7))).size,
      gets: r.requestLogs().filter((l) => l.digest === layer && l.method === "GET"),
      failed: await r.waitForLog((l) => l.msg === "a source failed mid-stream; asking the next for the rest" && l.digest === layer),
      continued: await r.waitForLog((l) => l.msg === "the fill continues from the next source" && l.digest === layer),
    };
  };

  beforeAll(async () => {
    env = new TestEnvironment("fleet-peers");
    await env.start();
    images = [await env.pushImage("team/one", "v1", [1_500_000, 500_000]), await env.pushImage("team/multi", "v1", [700_000, 300_000], 2), await env.pushImage("team/three", "v1", [900_000])];
    huge = await env.pushImage("team/huge", "v1", [200_000_000]);
    swift = new TestSwift(env.path("swift"));
    redis = new TestRedis();
    await Promise.all([swift.start(), redis.start()]);
    await exec(process.execPath, [CLI, "ca", "init", "--certs-dir", env.path("certs")]);
    peerPorts = await Promise.all([0, 1, 2].map(() => freePort()));
    replicas = peerPorts.map((p, i) => env.regcache(`replica-${i}`, fleetArgs(swift, redis, p, "fleet-peers", peerPorts.filter((_, j) => j !== i)), { env: swift.credentialsEnv }));
    await Promise.all(replicas.map((r) => r.start()));
    await allLive();
    haproxy = new TestHaproxy(env.dir, replicas.map((r) => r.port), "random");
    await haproxy.start();
    // Replicas 0 and 1 hold every image on their disks, replica 0 the large one too, and the store holds them all.
    for (const i of [0, 1]) {
      for (const image of images) {
        const warmed = await skopeoPull(replicas[i]!, image.ref, env.path(`warm-${i}-${image.repo.replace("/", "-")}`), { all: true });
        expect(warmed.ok, warmed.stderr).toBe(true);
      }
    }
    const warmedHuge = await skopeoPull(replicas[0]!, huge.ref, env.path("warm-huge"));
    expect(warmedHuge.ok, warmedHuge.stderr).toBe(true);
    const digests = new Set([...images.flatMap((image) => image.allDigests), ...huge.allDigests]);
    await waitFor(async () => {
      const all = await Promise.all(replicas.map(stats));
      return all.every((s) => s.shared.uploads.queued === 0) && all.reduce((n, s) => n + s.shared.uploads.uploaded, 0) >= digests.size;
    }, 60_000, "every digest's upload");
  });
  afterAll(async () => {
    await haproxy?.stop();
    await env?.cleanup();
    await swift?.stop();
    await redis?.stop();
  });

  it("the object store killed while a 200 MB layer streams from it to a replica restarted empty: the rest comes from a peer, and the client's one pull completes with the right digests", async () => {
    const { layer, bytes, gets, failed, continued } = await pullCutMidStream("store-killed", () => swift.kill());
    expect(gets.map((l) => [l.status, l.cache, l.completed, l.bytes])).toEqual([[200, "SHARED", true, bytes]]);
    expect(failed.source).toBe("object store");
    expect(continued.source).toBe(`peer 127.0.0.1:${peerPorts[0]}`);
    expect(env.registry.blobGets(layer)).toEqual([]);
  });

  it("with the store down, the peer a 200 MB layer streams from killed mid-stream: the rest comes from upstream with a Range request, and the client's one pull completes with the right digests", async () => {
    // Of replica 1's peers only replica 0 holds the layer.
    const port0 = replicas[0]!.port;
    try {
      const { layer, bytes, gets, failed, continued } = await pullCutMidStream("peer-killed", () => replicas[0]!.stop("SIGKILL").then(() => undefined));
      expect(gets.map((l) => [l.status, l.cache, l.completed, l.bytes])).toEqual([[200, "PEER", true, bytes]]);
      expect(failed.source).toBe(`peer 127.0.0.1:${peerPorts[0]}`);
      expect(continued.source).toBe("upstream quay.test");
      expect(env.registry.blobGets(layer).map((e) => e.status)).toEqual([206]);
    } finally {
      await replicas[0]!.start(port0);
      await allLive();
    }
  });

  it("with the object store and the upstream down, a replica restarted empty serves from its peers' copies, reports ready, and 15 of 15 pulls through the balancer succeed", async () => {
    await env.registry.stop();
    const containerd = containerdUnavailable() ? undefined : new TestContainerd(env.path("containerd"));
    try {
      await restartEmpty(2);
      // Through the restarted replica itself first: it holds nothing, and the store cannot be read.
      for (const image of images) {
        const dest = env.path(`empty-${image.repo.replace("/", "-")}`);
        const pulled = await skopeoPull(replicas[2]!, image.ref, dest, { all: true });
        expect(pulled.ok, `${image.ref}: ${pulled.stderr}`).toBe(true);
        expect(corruptBlobsInLayout(dest).corrupt).toEqual([]);
      }
      expect(replicas[2]!.requestLogs().filter((l) => l.kind === "blob" && l.cache === "PEER").length).toBeGreaterThanOrEqual(images.reduce((n, image) => n + image.layerDigests.length, 0));
      const readyz = await fetch(`${replicas[2]!.proxyUrl}/readyz`);
      expect(readyz.status).toBe(200);

      await containerd?.start();
      const results: [string, SkopeoResult][] = [];
      for (let i = 0; i < 5; i++) {
        const image = images[i % images.length]!;
        const all = image.manifests.length > 1;
        results.push([`skopeo tag ${image.ref}`, await skopeoPull(front(), image.ref, env.path(`down-tag-${i}`), { all })]);
        const byDigest = `${image.ref.split(":")[0]}@${image.topDigest}`;
        results.push([`skopeo digest ${byDigest}`, await skopeoPull(front(), byDigest, env.path(`down-digest-${i}`), { all })]);
        results.push(containerd ? [`ctr ${image.ref}`, await containerd.pull(front(), image.ref, { allPlatforms: all, namespace: `down-${i}` })] : [`skopeo tag again ${image.ref}`, await skopeoPull(front(), image.ref, env.path(`down-again-${i}`), { all })]);
      }
      for (const [what, r] of results) expect(r.ok, `${what}: ${r.stderr}`).toBe(true);
      expect(results).toHaveLength(15);
      for (let i = 0; i < 5; i++) expect(corruptBlobsInLayout(env.path(`down-tag-${i}`)).corrupt).toEqual([]);
    } finally {
      await containerd?.stop();
      await env.registry.start();
    }
  });
});
