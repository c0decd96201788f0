import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { corruptBlobsInLayout, curlThrough, skopeoPull, TestContainerd, type SkopeoResult } from "./harness/clients.js";
import { REGISTRY_HOST, TestEnvironment, type PushedImage } from "./harness/environment.js";
import { S3ObjectStore } from "../../src/fleet/s3-object-store.js";
import { createLogger } from "../../src/log/logger.js";
import { parseDigest, type Digest } from "../../src/oci/digest.js";
import { fleetArgs } from "./harness/fleet-args.js";
import { TestHaproxy } from "./harness/haproxy.js";
import { freePort, waitFor } from "./harness/ports.js";
import { TestRedis } from "./harness/redis.js";
import { expectOthersRefused } from "./harness/private-checks.js";
import { CLI, type RegcacheProcess } from "./harness/regcache-process.js";
import { writeHtpasswd } from "./harness/registry.js";
import { SWIFT_TOOLS, TestSwift } from "./harness/swift.js";
import { containerdUnavailable, missingTools } from "./harness/tools.js";

const exec = promisify(execFile);
const sha256 = (bytes: Buffer): string => `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
const missing = missingTools("docker-registry", "skopeo", "openssl", "curl", "haproxy", "redis-server", ...SWIFT_TOOLS);

async function withRetries(attempt: () => Promise<SkopeoResult>, tries = 3): Promise<SkopeoResult> {
  let last: SkopeoResult = { ok: false, stdout: "", stderr: "not tried", durationMs: 0 };
  for (let i = 0; i < tries && !last.ok; i++) last = await attempt();
  return last;
}

async function metric(r: RegcacheProcess, name: string): Promise<number> {
  const text = await (await fetch(`${r.proxyUrl}/metrics`)).text();
  const match = new RegExp(`^${name.replace(/[{}"=]/g, "\\$&")} (\\d+)`, "m").exec(text);
  return match ? Number(match[1]) : Number.NaN;
}

interface SharedStats {
  objectStore: string;
  index: string;
  degraded: boolean;
  objectFills: number;
  holderFills: number;
  duplicateFetches: number;
  uploads: { uploaded: number; queued: number; failures: number };
}

async function sharedStats(r: RegcacheProcess): Promise<SharedStats> {
  return ((await (await fetch(`${r.proxyUrl}/api/stats`)).json()) as { shared: SharedStats }).shared;
}

/**
 * Three replicas sharing Swift's S3 API and Redis, behind haproxy picking a replica at random per
 * connection (what a Kubernetes Service does), with distribution as the upstream.
 */
describe.skipIf(missing.length > 0)("replicas sharing an object store and an index act as one cache for a fleet", () => {
  let env: TestEnvironment;
  let swift: TestSwift;
  let redis: TestRedis;
  let replicas: RegcacheProcess[];
  let haproxy: TestHaproxy;
  let cold: PushedImage;
  let multi: PushedImage;
  let big: PushedImage;
  let big2: PushedImage;
  let large: PushedImage;

  const front = () => ({ proxyUrl: haproxy.proxyUrl, caFile: path.join(env.path("certs"), "ca.crt") });
  const uploadedEverywhere = async (): Promise<number> => (await Promise.all(replicas.map(sharedStats))).reduce((n, s) => n + s.uploads.uploaded, 0);
  const queuedAnywhere = async (): Promise<number> => (await Promise.all(replicas.map(sharedStats))).reduce((n, s) => n + s.uploads.queued, 0);
  /** Restarts replica i on its port with its data dir emptied: a pod rescheduled onto another node. */
  const restartEmpty = async (i: number): Promise<void> => {
    const r = replicas[i]!;
    const port = r.port;
    await r.stop("SIGKILL");
    rmSync(r.dataDir, { recursive: true, force: true });
    await r.start(port);
  };
  /** The fleet's object store as the replicas see it, for a test to damage what it holds. */
  const storeClient = (): S3ObjectStore => {
    Object.assign(process.env, swift.credentialsEnv);
    return new S3ObjectStore({ bucket: swift.bucket, prefix: "fleet", endpoint: swift.endpoint, forcePathStyle: true, region: "us-east-1", timeouts: { connectMs: 3_000, requestMs: 30_000, answerMs: 5_000 } }, createLogger("silent"));
  };
  /**
   * Replaces the stored object with `right` but for one flipped byte, at `at`, around regcache (as
   * bit rot or another tool would: regcache's own upload is signed with the digest, which the store checks).
   */
  const putFlipped = async (digest: Digest, right: Buffer, at: number): Promise<void> => {
    const flipped = Buffer.from(right);
    flipped[at]! ^= 0xff;
    const raw = new S3Client(swift.clientConfig());
    try {
      await raw.send(new PutObjectCommand({ Bucket: swift.bucket, Key: `fleet/blobs/${digest.algorithm}/${digest.hex.slice(0, 2)}/${digest.hex}`, Body: flipped, ContentType: "application/octet-stream" }));
    } finally {
      raw.destroy();
    }
  };

  /**
   * Damages the stored object at `at` and reads it through replica 1 restarted empty: the client's
   * body is cut, the object deleted, and the next read is right, fetched once from upstream and
   * stored again for the fleet.
   */
  const expectDamagedObjectHeals = async (store: S3ObjectStore, url: string, layer: string, right: Buffer, at: number): Promise<void> => {
    const digest = parseDigest(layer)!;
    await putFlipped(digest, right, at);
    await restartEmpty(1);
    env.registry.clearLog();
    const cut = await curlThrough(replicas[1]!, url);
    expect(cut.exitCode, "curl must see the body cut short").not.toBe(0);
    expect(cut.body.length).toBeLessThan(right.length);
    await waitFor(async () => (await store.head(digest)) === undefined, 10_000, "the damaged object to be deleted");
    expect(await metric(replicas[1]!, "regcache_shared_damaged_objects_total")).toBe(1);
    const again = await curlThrough(replicas[1]!, url);
    expect(again.status).toBe(200);
    expect(sha256(again.body)).toBe(layer);
    expect(env.registry.blobGets(layer).filter((e) => e.status === 200)).toHaveLength(1);
    await waitFor(async () => (await store.head(digest))?.size === right.length, 30_000, "the object to be uploaded again");
  };

  beforeAll(async () => {
    env = new TestEnvironment("fleet");
    await env.start();
    cold = await env.pushImage("team/cold", "v1", [4_000_000, 2_000_000, 1_000_000]);
    multi = await env.pushImage("team/multi", "v1", [700_000, 300_000], 2);
    big = await env.pushImage("team/big", "v1", [30_000_000, 20_000_000]);
    big2 = await env.pushImage("team/big2", "v1", [30_000_000, 20_000_000]);
    // Large enough to be read from the store in ranged parts (shared-tier.ts: READ_IN_PARTS_FROM, PART_PLAN).
    large = await env.pushImage("team/large", "v1", [40_000_000]);
    swift = new TestSwift(env.path("swift"));
    redis = new TestRedis();
    await Promise.all([swift.start(), redis.start()]);
    await exec(process.execPath, [CLI, "ca", "init", "--certs-dir", env.path("certs")]);
    const peerPorts = await Promise.all([0, 1, 2].map(() => freePort()));
    replicas = peerPorts.map((p, i) => env.regcache(`replica-${i}`, fleetArgs(swift, redis, p, "fleet"), { env: swift.credentialsEnv }));
    await Promise.all(replicas.map((r) => r.start()));
    haproxy = new TestHaproxy(env.dir, replicas.map((r) => r.port), "random");
    await haproxy.start();
  });
  afterAll(async () => {
    await haproxy?.stop();
    await env?.cleanup();
    await swift?.stop();
    await redis?.stop();
  });

  it("16 concurrent cold pulls through the balancer make exactly one upstream GET per blob for the fleet, and every blob reaches the object store", async () => {
    env.registry.clearLog();
    const pulls = await Promise.all(Array.from({ length: 16 }, (_, i) => skopeoPull(front(), cold.ref, env.path(`cold-${i}`))));
    for (const p of pulls) expect(p.ok, p.stderr).toBe(true);
    await waitFor(() => cold.layerDigests.every((l) => env.registry.blobGets(l).length > 0), 5_000, "the registry's log lines");
    for (const digest of cold.allDigests.filter((d) => d !== cold.topDigest)) expect(env.registry.blobGets(digest).filter((e) => e.status === 200), digest).toHaveLength(1);
    for (let i = 0; i < 16; i++) expect(corruptBlobsInLayout(env.path(`cold-${i}`)).corrupt).toEqual([]);
    // The replicas that did not fetch streamed from the one holding the lease.
    const stats = await Promise.all(replicas.map(sharedStats));
    expect(stats.reduce((n, s) => n + s.holderFills, 0)).toBeGreaterThan(0);
    expect(stats.reduce((n, s) => n + s.duplicateFetches, 0)).toBe(0);
    // Manifest, config and layers: each uploaded once, by the replica that fetched it.
    await waitFor(async () => (await uploadedEverywhere()) >= cold.allDigests.length, 30_000, "the uploads");
    expect(await uploadedEverywhere()).toBe(cold.allDigests.length);

    const warmed = await skopeoPull(front(), multi.ref, env.path("warm-multi"), { all: true });
    expect(warmed.ok, warmed.stderr).toBe(true);
    await waitFor(async () => (await queuedAnywhere()) === 0 && (await uploadedEverywhere()) >= cold.allDigests.length + multi.allDigests.length, 30_000, "the second image's uploads");
  });

  it("a replica restarted with an empty data dir serves every cached image with zero upstream blob GETs", async () => {
    await restartEmpty(0);
    env.registry.clearLog();
    const pulled = await skopeoPull(replicas[0]!, cold.ref, env.path("restarted-0"));
    expect(pulled.ok, pulled.stderr).toBe(true);
    const pulledMulti = await skopeoPull(replicas[0]!, multi.ref, env.path("restarted-0-multi"), { all: true });
    expect(pulledMulti.ok, pulledMulti.stderr).toBe(true);
    expect(corruptBlobsInLayout(env.path("restarted-0")).corrupt).toEqual([]);
    expect(env.registry.blobGets().filter((e) => e.status === 200)).toEqual([]);
    expect(replicas[0]!.requestLogs().filter((l) => l.cache === "SHARED").length).toBeGreaterThanOrEqual(cold.layerDigests.length);
    expect(await metric(replicas[0]!, "regcache_shared_object_fills_total")).toBeGreaterThanOrEqual(cold.allDigests.length);
  });

  it("an object damaged in the store is never served: the client's body is cut, the object deleted, and the next read is right", async () => {
    const layer = cold.layerDigests[2]!;
    const url = `https://${REGISTRY_HOST}/v2/${cold.repo}/blobs/${layer}`;
    const right = (await curlThrough(replicas[0]!, url)).body;
    expect(sha256(right)).toBe(layer);
    const store = storeClient();
    try {
      await expectDamagedObjectHeals(store, url, layer, right, right.length >> 1);
    } finally {
      store.close();
    }
  });

  it("a blob large enough to be read in ranged parts comes from the store whole through an empty replica; damaged in a later part, it is cut, deleted, and read right next", async () => {
    const layer = large.layerDigests[0]!;
    const digest = parseDigest(layer)!;
    const url = `https://${REGISTRY_HOST}/v2/${large.repo}/blobs/${layer}`;
    const right = (await curlThrough(replicas[0]!, url)).body;
    expect(sha256(right)).toBe(layer);
    const store = storeClient();
    try {
      await waitFor(async () => (await store.head(digest))?.size === right.length, 30_000, "the blob's upload");
      await restartEmpty(1);
      env.registry.clearLog();
      const shared = await curlThrough(replicas[1]!, url);
      expect(shared.status).toBe(200);
      expect(shared.headers["x-cache"]).toBe("SHARED");
      expect(shared.body.length).toBe(right.length);
      expect(sha256(shared.body)).toBe(layer);
      expect(env.registry.blobGets(layer).filter((e) => e.status === 200)).toEqual([]);

      // In the sixth of ten 4 MiB parts: neither the first part nor the last.
      await expectDamagedObjectHeals(store, url, layer, right, 20 * 1024 * 1024 + 12_345);
    } finally {
      store.close();
    }
  });

  it("with the upstream down and every replica restarted empty, 30 of 30 fresh pulls through the balancer succeed, by tag and by digest, with skopeo and ctr", async () => {
    await env.registry.stop();
    const containerd = containerdUnavailable() ? undefined : new TestContainerd(env.path("containerd"));
    try {
      for (const i of [0, 1, 2]) await restartEmpty(i);
      await containerd?.start();
      const results: [string, SkopeoResult][] = [];
      for (let i = 0; i < 10; i++) {
        const image = [cold, multi][i % 2]!;
        const all = image === multi;
        results.push([`skopeo tag ${image.ref}`, await skopeoPull(front(), image.ref, env.path(`down-tag-${i}`), { all })]);
        const byDigest = `${image.ref.split(":")[0]}@${image.topDigest}`;
        results.push([`skopeo digest ${byDigest}`, await skopeoPull(front(), byDigest, env.path(`down-digest-${i}`), { all })]);
        if (containerd) results.push([`ctr ${image.ref}`, await containerd.pull(front(), image.ref, { allPlatforms: all, namespace: `down-${i}` })]);
      }
      for (const [what, r] of results) expect(r.ok, `${what}: ${r.stderr}`).toBe(true);
      expect(results.length).toBe(containerd ? 30 : 20);
      for (let i = 0; i < 10; i++) expect(corruptBlobsInLayout(env.path(`down-tag-${i}`)).corrupt).toEqual([]);
    } finally {
      await containerd?.stop();
      await env.registry.start();
    }
  });

  it("with the upstream down, then Redis too, the tags each replica served from Redis still serve: 15 of 15 pulls through the balancer", async () => {
    await env.registry.stop();
    try {
      for (const i of [0, 1, 2]) await restartEmpty(i);
      // Every replica serves every tag once from Redis (stale: upstream is down), and its blobs from the store.
      for (const [i, r] of replicas.entries()) {
        for (const image of [cold, multi]) {
          const pulled = await skopeoPull(r, image.ref, env.path(`from-redis-${i}-${image.repo.replace("/", "-")}`), { all: image === multi });
          expect(pulled.ok, pulled.stderr).toBe(true);
        }
        expect(r.requestLogs().filter((l) => l.kind === "tag" && l.cache === "STALE")).toHaveLength(2);
      }
      await redis.kill();
      try {
        const results: [string, SkopeoResult][] = [];
        for (let i = 0; i < 15; i++) {
          const image = [cold, multi][i % 2]!;
          results.push([image.ref, await skopeoPull(front(), image.ref, env.path(`redis-down-${i}`), { all: image === multi })]);
        }
        for (const [what, r] of results) expect(r.ok, `${what}: ${r.stderr}`).toBe(true);
        for (let i = 0; i < 15; i++) expect(corruptBlobsInLayout(env.path(`redis-down-${i}`)).corrupt).toEqual([]);
      } finally {
        await redis.restart();
      }
    } finally {
      await env.registry.start();
    }
  });

  it("the object store and Redis back after an outage: /readyz says so within 15 s, with no client traffic", async () => {
    // Uploads retrying would reach the store on their own: none may be queued.
    await waitFor(async () => (await queuedAnywhere()) === 0, 30_000, "no queued uploads");
    await Promise.all([swift.kill(), redis.kill()]);
    const r = replicas[0]!;
    // A digest the fleet never stored: the index is asked for its row, then the store for the object.
    await curlThrough(r, `https://${REGISTRY_HOST}/v2/${cold.repo}/blobs/sha256:${"0".repeat(64)}`, ["-I"]);
    const readyz = async () => (await (await fetch(`${r.proxyUrl}/readyz`)).json()) as { status: string; degraded?: Record<string, string> };
    expect(await readyz()).toEqual({ status: "ready", degraded: { objectStore: "down", index: "down" } });
    await Promise.all([swift.restart(), redis.restart()]);
    await waitFor(async () => (await readyz()).degraded === undefined, 15_000, "/readyz to show the shared tier up");
  });

  it("with the object store killed during one pull and the index during another, pulls succeed and each blob is fetched upstream at most once per replica", async () => {
    // The upstream is back from the last test's outage: each replica's probe notices within --probe-interval.
    for (const r of replicas) {
      await waitFor(async () => (await curlThrough(r, `https://${REGISTRY_HOST}/v2/${big.repo}/manifests/v1`, ["-I", "-H", "Accept: application/vnd.oci.image.manifest.v1+json"])).status === 200, 15_000, "the replicas to see the upstream back");
    }
    env.registry.clearLog();
    const during = async (image: PushedImage, label: string, kill: () => Promise<void>): Promise<void> => {
      const pulls = Array.from({ length: 4 }, (_, i) => withRetries(() => skopeoPull(front(), image.ref, env.path(`${label}-${i}`))));
      await waitFor(() => replicas.some((r) => r.logs.some((l) => l.msg === "request" && l.repository === image.repo)), 10_000, "the pull to start");
      await kill();
      for (const p of await Promise.all(pulls)) expect(p.ok, p.stderr).toBe(true);
      for (let i = 0; i < 4; i++) expect(corruptBlobsInLayout(env.path(`${label}-${i}`)).corrupt).toEqual([]);
    };
    await during(big, "swift-killed", () => swift.kill());
    // The kill landed mid-pull: uploads of what the pull fetched failed, and wait for the store.
    expect((await Promise.all(replicas.map(sharedStats))).reduce((n, s) => n + s.uploads.failures, 0)).toBeGreaterThan(0);
    await waitFor(async () => (await sharedStats(replicas[0]!)).objectStore === "down" || (await sharedStats(replicas[1]!)).objectStore === "down" || (await sharedStats(replicas[2]!)).objectStore === "down", 20_000, "a replica to see the object store down");
    await during(big2, "redis-killed", () => redis.kill());
    // What is down shows: readiness stays (the replica serves), and says what it serves without.
    await waitFor(async () => (await sharedStats(replicas[1]!)).index === "down" || (await sharedStats(replicas[2]!)).index === "down" || (await sharedStats(replicas[0]!)).index === "down", 20_000, "a replica to see the index down");
    const degraded = await Promise.all(replicas.map(async (r) => ({ readyz: (await (await fetch(`${r.proxyUrl}/readyz`)).json()) as { status: string; degraded?: Record<string, string> }, up: await metric(r, 'regcache_shared_tier_up{part="index"}') })));
    const seen = degraded.find((d) => d.readyz.degraded?.index === "down");
    expect(seen?.readyz.status).toBe("ready");
    expect(seen?.up).toBe(0);
    // With the index gone, replicas filled on their own, and counted it.
    expect((await Promise.all(replicas.map(sharedStats))).reduce((n, s) => n + s.duplicateFetches, 0)).toBeGreaterThan(0);
    for (const image of [big, big2]) {
      for (const layer of image.layerDigests) expect(env.registry.blobGets(layer).filter((e) => e.status === 200).length, layer).toBeLessThanOrEqual(replicas.length);
    }
    // Both come back: queued uploads go through, and the fleet is whole again.
    await Promise.all([swift.restart(), redis.restart()]);
    await waitFor(async () => (await queuedAnywhere()) === 0, 90_000, "the queued uploads to go through");
    await waitFor(async () => (await Promise.all(replicas.map(sharedStats))).every((s) => !s.degraded), 30_000, "every replica to see the shared tier up");
  });

  it("after Redis came back empty, objects stored before are still found (by asking the store) and re-indexed: no upstream blob GETs", async () => {
    await restartEmpty(2);
    env.registry.clearLog();
    const pulled = await skopeoPull(replicas[2]!, cold.ref, env.path("after-redis-lost"));
    expect(pulled.ok, pulled.stderr).toBe(true);
    expect(corruptBlobsInLayout(env.path("after-redis-lost")).corrupt).toEqual([]);
    expect(env.registry.blobGets().filter((e) => e.status === 200)).toEqual([]);
    expect(replicas[2]!.requestLogs().filter((l) => l.cache === "SHARED").length).toBeGreaterThanOrEqual(cold.layerDigests.length);
    // The rows are back, with the repository confirmed upstream and found public again: an outage
    // now finds them linked, through a replica that never saw the image.
    const publicVerdict = async () => (await exec("redis-cli", ["-p", String(redis.port), "GET", `regcache:meta:public:${REGISTRY_HOST}/${cold.repo}`])).stdout.trim();
    await waitFor(async () => (await publicVerdict()).includes('"isPublic":true'), 10_000, "the fleet to learn the repository is public again");
    await env.registry.stop();
    try {
      await restartEmpty(0);
      const offline = await skopeoPull(replicas[0]!, cold.ref, env.path("after-redis-lost-offline"));
      expect(offline.ok, offline.stderr).toBe(true);
    } finally {
      await env.registry.start();
    }
  });
});

/** Issue 10's rule across a fleet: the object store and index never make private content readable to others. */
describe.skipIf(missing.length > 0)("a fleet keeps private content private", () => {
  let env: TestEnvironment;
  let swift: TestSwift;
  let redis: TestRedis;
  let a: RegcacheProcess;
  let b: RegcacheProcess;
  let secret: PushedImage;
  const ALICE = "alice:s3cret";

  beforeAll(async () => {
    const htpasswd = path.join(mkdtempSync(path.join(tmpdir(), "regcache-htpasswd-")), "htpasswd");
    writeHtpasswd(htpasswd, { alice: "s3cret" });
    env = new TestEnvironment("fleet-private", { htpasswdFile: htpasswd });
    await env.start();
    secret = await env.pushImage("corp/secret", "v1", [1_000_000], 1, ALICE);
    swift = new TestSwift(env.path("swift"));
    redis = new TestRedis();
    await Promise.all([swift.start(), redis.start()]);
    await exec(process.execPath, [CLI, "ca", "init", "--certs-dir", env.path("certs")]);
    const ports = await Promise.all([0, 1].map(() => freePort()));
    a = env.regcache("private-a", fleetArgs(swift, redis, ports[0]!, "private"), { env: swift.credentialsEnv });
    b = env.regcache("private-b", fleetArgs(swift, redis, ports[1]!, "private"), { env: swift.credentialsEnv });
    await Promise.all([a.start(), b.start()]);
  });
  afterAll(async () => {
    await env?.cleanup();
    await swift?.stop();
    await redis?.stop();
  });

  it("after alice pulls through one replica, an anonymous or wrong-credential pull through the other is refused, online and offline, and alice's own pull works offline", async () => {
    const authorized = await skopeoPull(a, secret.ref, env.path("alice"), { creds: ALICE });
    expect(authorized.ok, authorized.stderr).toBe(true);
    await waitFor(async () => (await sharedStats(a)).uploads.uploaded >= secret.allDigests.length, 30_000, "the uploads");
    await expectOthersRefused(env, b, secret, "online", "alice:wrong");
    // The object store holds the layer: asked for through a repository it was never confirmed in, it is not served.
    const elsewhere = await curlThrough(b, `https://quay.test/v2/library/public/blobs/${secret.layerDigests[0]}`);
    expect([401, 404]).toContain(elsewhere.status);
    const online = await skopeoPull(b, secret.ref, env.path("alice-b"), { creds: ALICE });
    expect(online.ok, online.stderr).toBe(true);
    expect(b.requestLogs().some((l) => l.cache === "SHARED")).toBe(true);
    await env.registry.stop();
    try {
      await expectOthersRefused(env, b, secret, "offline", "alice:wrong");
      // alice was confirmed through b: within --offline-grace her pull works there while upstream is down.
      const offline = await skopeoPull(b, secret.ref, env.path("alice-b-offline"), { creds: ALICE });
      expect(offline.ok, offline.stderr).toBe(true);
    } finally {
      await env.registry.start();
    }
  });
});
