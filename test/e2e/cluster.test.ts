import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { connect as netConnect } from "node:net";
import { connect } from "node:tls";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { corruptBlobsInLayout, curlThrough, runPrefetch, skopeoPull, TestContainerd, type SkopeoResult } from "./harness/clients.js";
import { blobFile, flipByte } from "./harness/cache-files.js";
import { REGISTRY_HOST, TestEnvironment, type PushedImage } from "./harness/environment.js";
import { FakePeer, type PeerFault } from "./harness/fake-peer.js";
import { TestHaproxy } from "./harness/haproxy.js";
import { freePort, waitFor } from "./harness/ports.js";
import { rankMembers } from "../../src/cluster/rendezvous.js";
import { expectOthersRefused } from "./harness/private-checks.js";
import { CLI, type RegcacheProcess } from "./harness/regcache-process.js";
import { writeHtpasswd } from "./harness/registry.js";
import { containerdUnavailable, missingTools } from "./harness/tools.js";

const exec = promisify(execFile);
const missing = missingTools("docker-registry", "skopeo", "openssl", "curl", "haproxy");

/** Kubelet retries a failed pull; so does this. */
async function withRetries(attempt: () => Promise<SkopeoResult>, tries = 4): Promise<SkopeoResult> {
  let last: SkopeoResult = { ok: false, stdout: "", stderr: "not tried", durationMs: 0 };
  for (let i = 0; i < tries && !last.ok; i++) last = await attempt();
  return last;
}

/**
 * Three replicas with peer lists, behind haproxy picking a replica at random per connection (what a
 * Kubernetes Service does), sharing one CA as replicas share a Secret.
 */
describe.skipIf(missing.length > 0)("replicas act as one cache", () => {
  let env: TestEnvironment;
  let replicas: RegcacheProcess[];
  let peerPorts: number[];
  let haproxy: TestHaproxy;
  let single: PushedImage;
  let multi: PushedImage;
  let warmByPull: PushedImage;
  let pulledMulti: PushedImage;
  let cold: PushedImage;

  const replicaArgs = (i: number, ports: number[]): string[] => [
    "--peer-listen", `127.0.0.1:${ports[i]}`,
    "--advertise", `127.0.0.1:${ports[i]}`,
    ...ports.filter((_, j) => j !== i).flatMap((p) => ["--peer", `127.0.0.1:${p}`]),
    "--failure-threshold", "2",
    "--probe-interval", "60s",
  ];

  beforeAll(async () => {
    env = new TestEnvironment("cluster");
    await env.start();
    single = await env.pushImage("team/one", "v1", [3_000_000, 800_000]);
    multi = await env.pushImage("team/multi", "v1", [700_000, 300_000], 2);
    warmByPull = await env.pushImage("team/pulled", "v1", [1_500_000]);
    pulledMulti = await env.pushImage("team/pulled-multi", "v1", [900_000, 200_000], 2);
    cold = await env.pushImage("team/cold", "v1", [4_000_000, 2_000_000, 1_000_000]);
    await exec(process.execPath, [CLI, "ca", "init", "--certs-dir", env.path("certs")]);
    peerPorts = await Promise.all([0, 1, 2, 3].map(() => freePort()));
    replicas = [0, 1, 2].map((i) => env.regcache(`replica-${i}`, replicaArgs(i, peerPorts.slice(0, 3))));
    await Promise.all(replicas.map((r) => r.start()));
    await Promise.all(replicas.map((r) => r.waitForLog((l) => l.msg === "peer channel listening")));
    await waitFor(() => replicas.every((r) => r.logs.filter((l) => l.msg === "peer is live").length >= 2), 15_000, "every replica to see its two peers live");
    haproxy = new TestHaproxy(env.dir, replicas.map((r) => r.port), "random");
    await haproxy.start();
  });
  afterAll(async () => {
    await haproxy?.stop();
    await env?.cleanup();
  });

  const front = () => ({ proxyUrl: haproxy.proxyUrl, caFile: path.join(env.path("certs"), "ca.crt") });
  const holders = (digest: string, among = replicas): number =>
    among.filter((r) => existsSync(path.join(r.dataDir, "blobs", "sha256", digest.slice(7, 9), digest.slice(7)))).length;
  /** Every digest of the image (or those listed) on at least two replicas: losing one loses nothing. */
  const onTwoReplicas = (image: PushedImage, digests = image.allDigests) => waitFor(() => digests.every((d) => holders(d) >= 2), 20_000, "every digest on two replicas");
  /** The digests a pull into an OCI layout fetched: its manifest, config and layers. */
  const pulledDigests = (dir: string): string[] => readdirSync(path.join(dir, "blobs", "sha256")).map((hex) => `sha256:${hex}`);

  /**
   * 10 rounds over `images` of a fresh skopeo pull by tag, one by digest and (with containerd) a ctr
   * pull, through the balancer; every one must succeed, with every digest checked.
   */
  const freshPulls = async (images: PushedImage[], allPlatforms: boolean, containerd: TestContainerd | undefined, label: string): Promise<void> => {
    const results: [string, SkopeoResult][] = [];
    for (let i = 0; i < 10; i++) {
      const image = images[i % images.length]!;
      results.push([`skopeo tag ${image.ref}`, await skopeoPull(front(), image.ref, env.path(`${label}-tag-${i}`), { all: allPlatforms })]);
      const byDigest = `${image.ref.split(":")[0]}@${image.topDigest}`;
      results.push([`skopeo digest ${byDigest}`, await skopeoPull(front(), byDigest, env.path(`${label}-digest-${i}`), { all: allPlatforms })]);
      if (containerd) results.push([`ctr ${image.ref}`, await containerd.pull(front(), image.ref, { allPlatforms, namespace: `${label}-${i}` })]);
    }
    for (const [what, r] of results) expect(r.ok, `${what}: ${r.stderr}`).toBe(true);
    expect(results.length).toBe(containerd ? 30 : 20);
    for (let i = 0; i < 10; i++) expect(corruptBlobsInLayout(env.path(`${label}-tag-${i}`)).corrupt).toEqual([]);
  };

  it("16 concurrent cold pulls through the balancer make one upstream GET per blob for the whole cluster", async () => {
    env.registry.clearLog();
    const pulls = await Promise.all(Array.from({ length: 16 }, (_, i) => withRetries(() => skopeoPull(front(), cold.ref, env.path(`cold-${i}`)), 2)));
    for (const p of pulls) expect(p.ok, p.stderr).toBe(true);
    await waitFor(() => cold.layerDigests.every((l) => env.registry.blobGets(l).length > 0), 5_000, "the registry's log lines");
    for (const layer of cold.layerDigests) expect(env.registry.blobGets(layer).filter((e) => e.status === 200), layer).toHaveLength(1);
    expect(corruptBlobsInLayout(env.path("cold-15")).corrupt).toEqual([]);
  });

  /** Warms through the balancer: `prefetch` of single and multi, one ordinary pull of the others; each digest then on two replicas. */
  const warmBothWays = async (label: string): Promise<void> => {
    const prefetched = await runPrefetch(["--proxy", haproxy.proxyUrl, single.ref, multi.ref]);
    expect(prefetched.code, prefetched.stdout + prefetched.stderr).toBe(0);
    for (const image of [single, multi]) await onTwoReplicas(image);
    for (const image of [warmByPull, pulledMulti]) {
      const dest = env.path(`${label}-${image.repo.replace("/", "-")}`);
      const warmed = await skopeoPull(front(), image.ref, dest);
      expect(warmed.ok, warmed.stderr).toBe(true);
      // A node's pull fetches its own platform only, and the index it resolves it through.
      await onTwoReplicas(image, [image.topDigest, ...pulledDigests(dest)]);
    }
  };

  it("after prefetch through the balancer, and after one ordinary pull per image, with the upstream stopped: 30 of 30 fresh pulls of each succeed, by tag and by digest, skopeo and ctr", async () => {
    await warmBothWays("warm");
    // Both ways of warming are checked in one outage: replicas take up to --probe-interval to see upstream back.
    await env.registry.stop();
    try {
      const containerd = containerdUnavailable() ? undefined : new TestContainerd(env.path("containerd"));
      await containerd?.start();
      try {
        await freshPulls([single, multi], true, containerd, "prefetched");
        await freshPulls([warmByPull, pulledMulti], false, containerd, "pulled");
      } finally {
        await containerd?.stop();
      }
    } finally {
      await env.registry.start();
    }
  });

  /** Starts the replicas on their ports and waits until each sees the others live. */
  const startAll = async (among = replicas): Promise<void> => {
    await Promise.all(among.map((r) => r.start(r.port)));
    await waitFor(() => among.every((r) => r.logs.filter((l) => l.msg === "peer is live").length >= among.length - 1), 15_000, "every replica to see its peers live");
  };
  const readyz = async (r: RegcacheProcess): Promise<unknown> => (await fetch(`${r.proxyUrl}/readyz`)).json();
  /** Every data dir made what `snapshot` holds (the replicas stopped). */
  const restore = (snapshot: string): void => {
    for (const [i, r] of replicas.entries()) {
      rmSync(r.dataDir, { recursive: true, force: true });
      cpSync(path.join(snapshot, String(i)), r.dataDir, { recursive: true });
    }
  };

  it("after prefetch, and after one ordinary pull per image, with the upstream stopped: kill -9 of each replica in turn loses no pull (15 of 15 of every image, by tag and by digest, skopeo and ctr)", async () => {
    // Fresh replicas: what earlier tests copied around (an outage spreads everything) would make each hold all.
    await Promise.all(replicas.map((r) => r.stop("SIGKILL")));
    for (const r of replicas) rmSync(r.dataDir, { recursive: true, force: true });
    await startAll();
    await warmBothWays("rewarm");
    // Each tag answer reached a second replica, with its manifest.
    for (const image of [single, multi, warmByPull, pulledMulti]) {
      await waitFor(() => replicas.some((r) => r.logs.some((l) => l.msg === "kept a tag answer a peer recorded" && l.repository === image.repo && l.manifestKept === true)), 20_000, `the tag of ${image.repo} on a second replica`);
    }
    // Each run starts from this warm state: a run must not benefit from what the one before copied.
    await Promise.all(replicas.map((r) => r.stop()));
    const snapshot = env.path("warm-snapshot");
    for (const [i, r] of replicas.entries()) cpSync(r.dataDir, path.join(snapshot, String(i)), { recursive: true });
    await env.registry.stop();
    const containerd = containerdUnavailable() ? undefined : new TestContainerd(env.path("containerd-kill"));
    try {
      await containerd?.start();
      for (const killed of [0, 1, 2]) {
        restore(snapshot);
        await startAll();
        await replicas[killed]!.stop("SIGKILL");
        await freshPulls([single, multi], true, containerd, `killed-${killed}-prefetched`);
        await freshPulls([warmByPull, pulledMulti], false, containerd, `killed-${killed}-pulled`);
        // The survivors stay ready, and say which part they serve without.
        for (const r of replicas.filter((_, i) => i !== killed)) expect(await readyz(r)).toEqual({ status: "ready", degraded: { peers: "1 of 2 not answering" } });
        await Promise.all(replicas.map((r) => r.stop("SIGKILL")));
      }
    } finally {
      await containerd?.stop();
      await Promise.all(replicas.map((r) => r.stop("SIGKILL")));
      await env.registry.start();
      restore(snapshot);
      await startAll();
    }
    for (const r of replicas) expect(await readyz(r)).toEqual({ status: "ready" });
  });

  it("a replica started empty while the upstream is down serves cached images from its peers", async () => {
    const newcomer = env.regcache("newcomer", replicaArgs(3, peerPorts));
    await env.registry.stop();
    try {
      await newcomer.start();
      await waitFor(() => newcomer.logs.filter((l) => l.msg === "peer is live").length >= 2, 15_000, "the newcomer to see live peers");
      for (const image of [single, multi]) {
        const pulled = await skopeoPull(newcomer, image.ref, env.path(`newcomer-${image.repo.replace("/", "-")}`), { all: true });
        expect(pulled.ok, pulled.stderr).toBe(true);
        expect(corruptBlobsInLayout(env.path(`newcomer-${image.repo.replace("/", "-")}`)).corrupt).toEqual([]);
      }
      expect(newcomer.requestLogs().some((l) => l.cache === "PEER")).toBe(true);
      const metrics = await (await fetch(`${newcomer.proxyUrl}/metrics`)).text();
      expect(Number(/^regcache_peer_copies_total (\d+)/m.exec(metrics)?.[1])).toBeGreaterThan(0);
      expect(Number(/^regcache_peers_live (\d+)/m.exec(metrics)?.[1])).toBe(3);
      const stats = (await (await fetch(`${newcomer.proxyUrl}/api/stats`)).json()) as { peers: { members: { address: string; live: boolean }[] } };
      expect(stats.peers.members.filter((m) => m.live)).toHaveLength(3);
    } finally {
      await newcomer.stop();
      await env.registry.start();
    }
  });

  it("the peer port refuses a client without a certificate, one from another CA, and garbage, and stays up", async () => {
    const port = peerPorts[1]!;
    const attempt = (options: { cert?: string; key?: string }): Promise<string> =>
      new Promise((resolve) => {
        const socket = connect({ host: "127.0.0.1", port, rejectUnauthorized: false, ...options }, () => {
          socket.write("GET /peer/v1/health HTTP/1.1\r\nHost: peer\r\n\r\n");
        });
        let got = "";
        socket.setTimeout(5_000, () => socket.destroy());
        socket.on("data", (d: Buffer) => (got += d.toString()));
        socket.on("error", () => resolve(got || "refused"));
        socket.on("close", () => resolve(got || "refused"));
      });
    expect(await attempt({})).toBe("refused");
    expect(await attempt({ cert: readFileSync(env.pki.serverCert, "utf8"), key: readFileSync(env.pki.serverKey, "utf8") })).toBe("refused");
    await new Promise<void>((resolve) => {
      const raw = netConnect(port, "127.0.0.1", () => raw.end("\x16\x03\x01garbage garbage garbage\r\n\r\n"));
      raw.setTimeout(5_000, () => raw.destroy());
      raw.on("close", () => resolve());
      raw.on("error", () => resolve());
    });
    const refusalLines = () => replicas[1]!.logs.filter((l) => String(l.msg).startsWith("peer channel: refused"));
    await waitFor(() => refusalLines().length >= 3, 5_000, "the refusals' log lines");
    expect(refusalLines().find((l) => l.cause === "other-ca")?.msg).toBe("peer channel: refused client certificates from another CA");
    // A flood (a scanner, a misconfigured client): counted, and logged as a handful of lines with counts and addresses.
    for (let batch = 0; batch < 40; batch++) await Promise.all(Array.from({ length: 25 }, () => attempt({})));
    const refused = await (await fetch(`${replicas[1]!.proxyUrl}/metrics`)).text();
    expect(Number(/^regcache_peer_refused_connections_total\{cause="no-certificate"\} (\d+)/m.exec(refused)?.[1])).toBe(1001);
    expect(refusalLines().length).toBeLessThanOrEqual(5);
    for (const line of refusalLines()) {
      expect(line.count).toBeGreaterThanOrEqual(1);
      expect((line.clients as string[]).some((c) => /(^|:)127\.0\.0\.1$/.test(c)), JSON.stringify(line)).toBe(true);
    }
    expect((await fetch(`${replicas[1]!.proxyUrl}/healthz`)).status).toBe(200);
    // Peers still reach it: a fresh pull through it of an image another replica holds.
    const pulled = await skopeoPull(replicas[1]!, single.ref, env.path("after-garbage"));
    expect(pulled.ok, pulled.stderr).toBe(true);
  });
});

describe.skipIf(missing.length > 0)("replicas as one cache keep private content private", () => {
  let env: TestEnvironment;
  let a: RegcacheProcess;
  let b: RegcacheProcess;
  let secret: PushedImage;
  const ALICE = "alice:s3cret";

  beforeAll(async () => {
    const htpasswd = path.join(mkdtempSync(path.join(tmpdir(), "regcache-htpasswd-")), "htpasswd");
    writeHtpasswd(htpasswd, { alice: "s3cret" });
    env = new TestEnvironment("cluster-private", { htpasswdFile: htpasswd });
    await env.start();
    secret = await env.pushImage("corp/secret", "v1", [1_000_000], 1, ALICE);
    await exec(process.execPath, [CLI, "ca", "init", "--certs-dir", env.path("certs")]);
    const ports = await Promise.all([0, 1].map(() => freePort()));
    const args = (i: number): string[] => ["--peer-listen", `127.0.0.1:${ports[i]}`, "--advertise", `127.0.0.1:${ports[i]}`, "--peer", `127.0.0.1:${ports[1 - i]}`, "--failure-threshold", "1"];
    a = env.regcache("private-a", args(0));
    b = env.regcache("private-b", args(1));
    await Promise.all([a.start(), b.start()]);
    await waitFor(() => [a, b].every((r) => r.logs.some((l) => l.msg === "peer is live")), 15_000, "the replicas to see each other");
  });
  afterAll(async () => env?.cleanup());

  it("after alice pulls through one replica, an anonymous or wrong-credential pull through the other is refused, online and offline", async () => {
    const authorized = await skopeoPull(a, secret.ref, env.path("alice"), { creds: ALICE });
    expect(authorized.ok, authorized.stderr).toBe(true);
    await expectOthersRefused(env, b, secret, "online", "alice:wrong");
    await env.registry.stop();
    try {
      await expectOthersRefused(env, b, secret, "offline", "alice:wrong");
    } finally {
      await env.registry.start();
    }
  });
});

describe.skipIf(missing.length > 0)("a replica's first read of a blob it lacks streams its owner's bytes, and only right ones", () => {
  let env: TestEnvironment;
  let image: PushedImage;
  let layer: string;
  let blobUrl: string;
  const peerArgs = (self: number, peer: number): string[] => ["--peer-listen", `127.0.0.1:${self}`, "--advertise", `127.0.0.1:${self}`, "--peer", `127.0.0.1:${peer}`, "--failure-threshold", "1"];
  /** Ports for the replica under test and its peer, the peer ranking first (the owner) for the layer. */
  const portsWithPeerOwning = async (): Promise<{ self: number; owner: number }> => {
    for (;;) {
      const [self, owner] = [await freePort(), await freePort()];
      if (rankMembers(layer, [`127.0.0.1:${self}`, `127.0.0.1:${owner}`])[0] === `127.0.0.1:${owner}`) return { self, owner };
    }
  };
  const sha256 = (bytes: Buffer): string => `sha256:${createHash("sha256").update(bytes).digest("hex")}`;

  beforeAll(async () => {
    env = new TestEnvironment("cluster-first-read");
    await env.start();
    // Over the size every lookup hashes whole (blob-store.ts): the owner serves it as it is on disk.
    image = await env.pushImage("team/peer-read", "v1", [6_000_000]);
    layer = image.layerDigests[0]!;
    blobUrl = `https://${REGISTRY_HOST}/v2/${image.repo}/blobs/${layer}`;
    await exec(process.execPath, [CLI, "ca", "init", "--certs-dir", env.path("certs")]);
  });
  afterAll(async () => env?.cleanup());

  it("is byte-exact, marked PEER, and the next read is a local hit", async () => {
    const { self, owner } = await portsWithPeerOwning();
    const holder = env.regcache("first-read-owner", peerArgs(owner, self));
    await holder.start();
    expect((await curlThrough(holder, blobUrl)).status).toBe(200);
    const asker = env.regcache("first-read-asker", peerArgs(self, owner));
    await asker.start();
    await waitFor(() => asker.logs.some((l) => l.msg === "peer is live"), 15_000, "the replica to see its peer");
    const first = await curlThrough(asker, blobUrl);
    expect(first.exitCode).toBe(0);
    expect(first.status).toBe(200);
    expect(first.headers["x-cache"]).toBe("PEER");
    expect(sha256(first.body)).toBe(layer);
    const second = await curlThrough(asker, blobUrl);
    expect(second.headers["x-cache"]).toBe("HIT");
    expect(sha256(second.body)).toBe(layer);
    expect(env.registry.blobGets(layer)).toHaveLength(1);
    await asker.stop();
    await holder.stop();
  });

  it("from an owner whose file was damaged after it was verified: the first read is cut, the owner drops its file, and the retry is byte-exact", async () => {
    const { self, owner } = await portsWithPeerOwning();
    const holder = env.regcache("damaged-owner", peerArgs(owner, self));
    const asker = env.regcache("damaged-owner-asker", peerArgs(self, owner));
    try {
      await holder.start();
      // Filled from upstream, so hashed on the way in: verified this run, once stored (a HIT says so).
      expect((await curlThrough(holder, blobUrl)).status).toBe(200);
      await waitFor(async () => (await curlThrough(holder, blobUrl, ["-I"])).headers["x-cache"] === "HIT", 10_000, "the owner to store the blob");
      const file = blobFile(holder, layer);
      const size = statSync(file).size;
      flipByte(file, 1_000_000);
      await asker.start();
      await waitFor(() => asker.logs.some((l) => l.msg === "peer is live"), 15_000, "the replica to see its peer");
      env.registry.clearLog();
      const first = await curlThrough(asker, blobUrl);
      expect(first.exitCode, "curl must see the body cut short").not.toBe(0);
      expect(first.body.length).toBeLessThan(size);
      await holder.waitForLog((l) => l.msg === "cached file does not match its digest; quarantined, will be refetched" && l.digest === layer);
      const retry = await curlThrough(asker, blobUrl);
      expect(retry.exitCode).toBe(0);
      expect(retry.status).toBe(200);
      expect(sha256(retry.body)).toBe(layer);
      // The fleet heals: the next read is a right one kept by both. (The retry can have been streamed
      // through uncached: when the cut stream ends, the asker tries to copy the owner's file for itself,
      // and a read that joins that attempt goes upstream on its own once the owner says it has none.)
      const third = await curlThrough(asker, blobUrl);
      expect(sha256(third.body)).toBe(layer);
      await waitFor(() => existsSync(file) && existsSync(blobFile(asker, layer)), 10_000, "the owner and the asker to keep the blob");
      expect(sha256(readFileSync(file))).toBe(layer);
      expect(sha256(readFileSync(blobFile(asker, layer)))).toBe(layer);
    } finally {
      await asker.stop();
      await holder.stop();
    }
  });

  /** The replica under test (asker), its owner a FakePeer that spoils its bytes as `fault` says; `check` looks at what the asker served. */
  const withFaultyOwner = async (fault: PeerFault, check: (asker: RegcacheProcess, bytes: Buffer) => Promise<void>): Promise<void> => {
    const direct = await exec("curl", ["-sf", "--noproxy", "*", "--cacert", env.pki.caCert, `https://${env.registry.url}/v2/${image.repo}/blobs/${layer}`], { encoding: "buffer", maxBuffer: 64_000_000 });
    const bytes = direct.stdout;
    expect(sha256(bytes)).toBe(layer);
    const { self, owner } = await portsWithPeerOwning();
    const peer = new FakePeer(env.path("certs"), bytes, fault);
    await peer.start(owner);
    const asker = env.regcache(`faulty-owner-${fault}`, peerArgs(self, owner));
    try {
      await asker.start();
      await waitFor(() => asker.logs.some((l) => l.msg === "peer is live"), 15_000, "the replica to see its peer");
      await check(asker, bytes);
    } finally {
      await asker.stop();
      await peer.stop();
    }
  };

  it("from an owner whose bytes go wrong (a byte flipped under the full length): the client's body is cut short, and nothing is cached", async () => {
    await withFaultyOwner("wrong-byte", async (asker, bytes) => {
      const got = await curlThrough(asker, blobUrl);
      expect(got.status).toBe(200);
      expect(got.exitCode, "curl must see the body cut short").not.toBe(0);
      expect(got.body.length).toBeLessThan(bytes.length);
      await asker.waitForLog((l) => l.msg === "download failed; nothing cached");
      expect(existsSync(blobFile(asker, layer))).toBe(false);
    });
  });

  it("from an owner that closes the connection halfway: the rest comes from upstream with a Range request, and the client gets one whole, right body", async () => {
    await withFaultyOwner("early-close", async (asker, bytes) => {
      env.registry.clearLog();
      const got = await curlThrough(asker, blobUrl);
      expect(got.exitCode).toBe(0);
      expect(got.status).toBe(200);
      expect(got.body.length).toBe(bytes.length);
      expect(sha256(got.body)).toBe(layer);
      expect(env.registry.blobGets(layer).map((e) => e.status)).toEqual([206]);
      await waitFor(() => existsSync(blobFile(asker, layer)), 10_000, "the asker to keep the blob");
      expect(sha256(readFileSync(blobFile(asker, layer)))).toBe(layer);
    });
  });
});
