import { execFile, execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { corruptBlobsInLayout, curlThrough, skopeoPull } from "./harness/clients.js";
import { REGISTRY_HOST, TestEnvironment, type PushedImage } from "./harness/environment.js";
import { EioFs, eioFsUnavailable } from "./harness/eio-fs.js";
import { drip, FakeUpstream } from "./harness/fake-upstream.js";
import { LoopDisk, loopDiskUnavailable } from "./harness/loop-disk.js";
import { freePort, waitFor } from "./harness/ports.js";
import { CLI, type RegcacheProcess } from "./harness/regcache-process.js";
import { writeHtpasswd } from "./harness/registry.js";
import { rankMembers } from "../../src/cluster/rendezvous.js";
import { mountTmpfs, tmpfsUnavailable, unmountTmpfs } from "./harness/tmpfs.js";
import { missingTools } from "./harness/tools.js";

const missing = missingTools("docker-registry", "skopeo", "openssl", "curl", "chattr");
const exec = promisify(execFile);

interface DiskStats {
  cache: { bytes: number; entries: number; maxBytes: number; diskFull: boolean; indexWriteError: string | null; diskFault: { action: string; code: string; reason: string } | null; uncachedForDiskFault: number };
}

async function stats(proxy: RegcacheProcess): Promise<DiskStats> {
  return (await (await fetch(`${proxy.proxyUrl}/api/stats`)).json()) as DiskStats;
}

async function readyz(proxy: RegcacheProcess): Promise<{ status: number; body: { status: string; degraded?: Record<string, string> } }> {
  const res = await fetch(`${proxy.proxyUrl}/readyz`);
  return { status: res.status, body: (await res.json()) as { status: string; degraded?: Record<string, string> } };
}

const sha256 = (data: Buffer): string => `sha256:${createHash("sha256").update(data).digest("hex")}`;

/**
 * A cache disk that fails under a running regcache, on a real ext4 filesystem: a directory replaced
 * or made immutable, then the whole filesystem turned read-only by the kernel as after an I/O error.
 * Each costs the cache, never the client: misses stream through uncached, what is cached is served,
 * the process stays up, and caching resumes when the disk can be written again.
 */
describe.skipIf(missing.length > 0 || loopDiskUnavailable())("a data disk that fails under a running regcache", () => {
  let env: TestEnvironment;
  let disk: LoopDisk;
  let proxy: RegcacheProcess;
  let warm: PushedImage;
  const cold: PushedImage[] = [];
  let pulls = 0;
  let dataDir: string;

  const pull = async (image: PushedImage): Promise<void> => {
    const dest = env.path(`pull-${++pulls}`);
    const pulled = await skopeoPull(proxy, image.ref, dest);
    expect(pulled.ok, `${pulled.stderr}\n${proxy.logs.filter((l) => l.level >= 40).map((l) => JSON.stringify(l)).join("\n")}`).toBe(true);
    expect(corruptBlobsInLayout(dest).corrupt).toEqual([]);
  };
  const uncachedFor = (image: PushedImage): unknown[] => proxy.requestLogs().filter((l) => l.uncached === "disk-fault" && image.layerDigests.includes(String(l.digest)));
  const writableAgain = (): Promise<unknown> => proxy.waitForLog((l) => l.msg === "data disk writable again: caching resumes", 20_000);

  beforeAll(async () => {
    env = new TestEnvironment("disk-faults");
    await env.start();
    warm = await env.pushImage("team/warm", "1", [3_000_000, 1_000_000]);
    for (let i = 0; i < 4; i++) cold.push(await env.pushImage(`team/cold-${i}`, "1", [2_000_000 + i, 500_000 + i]));
    disk = new LoopDisk(env.path("disk.img"), env.path("disk"), 300 * 1024 * 1024);
    disk.mount();
    dataDir = path.join(disk.mountPoint, "data");
    proxy = env.regcache("ext4", [], { dataDir });
    await proxy.start();
    await pull(warm);
  }, 300_000);
  afterAll(async () => {
    await proxy?.stop("SIGKILL").catch(() => undefined);
    disk?.cleanup();
    await env?.cleanup();
  });

  it("<data>/tmp replaced by a file: the pull streams through uncached, regcache stays up, and caching resumes once it is a directory again", async () => {
    const tmp = path.join(dataDir, "tmp");
    rmSync(tmp, { recursive: true, force: true });
    writeFileSync(tmp, "not a directory\n");
    try {
      await pull(cold[0]!);
      expect(uncachedFor(cold[0]!).length).toBeGreaterThan(0);
      expect(proxy.running).toBe(true);
      const ready = await readyz(proxy);
      expect(ready.status).toBe(200);
      expect(ready.body.degraded?.dataDisk).toMatch(/^cannot create a cache file: /);
      expect((await stats(proxy)).cache.diskFault?.action).toBe("create a cache file");
      // What is cached is served as before, without asking upstream for its bytes.
      env.registry.clearLog();
      await pull(warm);
      expect(env.registry.blobGets()).toEqual([]);
    } finally {
      rmSync(tmp, { force: true });
    }
    await writableAgain();
    expect((await readyz(proxy)).body.degraded).toBeUndefined();
    await pull(cold[0]!);
    env.registry.clearLog();
    await pull(cold[0]!);
    expect(env.registry.blobGets()).toEqual([]);
  });

  it("blobs/ made immutable (chattr +i, which binds root too): the pull streams through uncached; caching resumes after chattr -i", async () => {
    proxy.logs.length = 0;
    const blobs = path.join(dataDir, "blobs", "sha256");
    execFileSync("chattr", ["+i", blobs]);
    try {
      await pull(cold[1]!);
      expect(uncachedFor(cold[1]!).length).toBeGreaterThan(0);
      expect(proxy.running).toBe(true);
      expect((await stats(proxy)).cache.diskFault?.code).toBe("EPERM");
    } finally {
      execFileSync("chattr", ["-i", blobs]);
    }
    await writableAgain();
    await pull(cold[1]!);
    env.registry.clearLog();
    await pull(cold[1]!);
    expect(env.registry.blobGets()).toEqual([]);
  });

  it("the filesystem turns read-only as a pull starts (ext4 errors=remount-ro): no exit, cached images served, misses streamed through uncached, /readyz and /metrics say so", async () => {
    proxy.logs.length = 0;
    // A pull in flight when the disk fails may be cut (its bytes were being written): the client's
    // retry is served. Neither may take the process down.
    const during = skopeoPull(proxy, cold[2]!.ref, env.path(`pull-${++pulls}`));
    disk.failReadOnly();
    await during;
    expect(proxy.running).toBe(true);
    await pull(cold[2]!);
    await pull(cold[3]!);
    expect(uncachedFor(cold[3]!).length).toBeGreaterThan(0);
    env.registry.clearLog();
    await pull(warm);
    expect(env.registry.blobGets()).toEqual([]);
    const ready = await readyz(proxy);
    expect(ready.status).toBe(200);
    expect(ready.body.degraded?.dataDisk).toContain("read-only file system");
    const metrics = await (await fetch(`${proxy.proxyUrl}/metrics`)).text();
    expect(metrics).toMatch(/^regcache_cache_disk_writable 0$/m);
    expect(Number(/^regcache_cache_uncached_disk_fault_total (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThan(0);
    const warning = proxy.logs.filter((l) => l.msg === "data disk cannot be written: serving what is cached, streaming misses through uncached until it can");
    expect(warning.length).toBe(1);
    expect(proxy.running).toBe(true);
  });

  it("restarted while the disk is read-only, it starts, says so, and serves what is cached", async () => {
    expect(await proxy.stop()).toBe(0);
    await proxy.start();
    await proxy.waitForLog((l) => l.msg === "the data dir's disk is read-only: its lock is held outside it until the disk can be written");
    expect((await readyz(proxy)).body.degraded?.dataDisk).toContain("read-only file system");
    env.registry.clearLog();
    await pull(warm);
    expect(env.registry.blobGets()).toEqual([]);
  });

  it("repaired and mounted again, the disk is noticed without a restart: the lock and the index return to it, and what is cached from then on outlives a restart", async () => {
    disk.repair();
    await writableAgain();
    await proxy.waitForLog((l) => l.msg === "cache index reopened on its file");
    const lock = path.join(dataDir, "lock");
    expect(lstatSync(lock).isSymbolicLink()).toBe(true);
    expect(readlinkSync(lock)).toBe(String(proxy.pid));
    await pull(cold[3]!);
    expect(await proxy.stop()).toBe(0);
    await proxy.start();
    expect((await readyz(proxy)).body.degraded).toBeUndefined();
    env.registry.clearLog();
    await pull(cold[3]!);
    await pull(warm);
    expect(env.registry.blobGets()).toEqual([]);
  });
});

/**
 * A body of undeclared length (chunked) that never ends, on a 600 MiB disk already holding 100 MB:
 * it may fill the free space, never evict what is cached for its sake, and the disk's bound and
 * state read true once it is cut.
 */
describe.skipIf(missing.length > 0 || tmpfsUnavailable())("an endless body of undeclared length on a small disk", () => {
  let env: TestEnvironment;
  let upstream: FakeUpstream;
  let proxy: RegcacheProcess;
  let mountPoint: string;
  const warm = Array.from({ length: 20 }, () => randomBytes(5_000_000));
  const warmByDigest = new Map(warm.map((b) => [sha256(b), b]));
  const endless = sha256(randomBytes(32));
  const blobUrl = (digest: string): string => `https://slow.test/v2/team/app/blobs/${digest}`;

  beforeAll(async () => {
    env = new TestEnvironment("endless");
    upstream = new FakeUpstream(env.pki, (req, res) => {
      const digest = (req.url ?? "").split("/").pop() ?? "";
      const body = warmByDigest.get(digest);
      if (body) {
        res.writeHead(200, { "content-type": "application/octet-stream", "content-length": body.length, "docker-content-digest": digest });
        res.end(req.method === "HEAD" ? undefined : body);
        return;
      }
      if (digest !== endless) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { "content-type": "application/octet-stream" });
      const chunk = randomBytes(1024 * 1024);
      const more = (): void => {
        while (!res.destroyed && res.write(chunk));
        if (!res.destroyed) res.once("drain", more);
      };
      more();
    });
    await upstream.start();
    mountPoint = env.path("tmpfs");
    mountTmpfs(mountPoint, 600 * 1024 * 1024);
    proxy = env.regcache("endless", upstream.resolveArg("slow.test"), { dataDir: path.join(mountPoint, "data") });
    await proxy.start();
    for (const [digest] of warmByDigest) expect((await curlThrough(proxy, blobUrl(digest))).headers["x-cache"]).toBe("MISS");
    await waitFor(async () => (await stats(proxy)).cache.entries === 20, 10_000, "the warm blobs to be stored");
  }, 300_000);
  afterAll(async () => {
    await proxy?.stop("SIGKILL").catch(() => undefined);
    await upstream?.stop();
    if (mountPoint) unmountTmpfs(mountPoint);
    await env?.cleanup();
  });

  it("fills the free space, is cut when the disk is full, evicts nothing, and leaves the stats true", async () => {
    const cut = await curlThrough(proxy, blobUrl(endless), [], 120_000);
    expect(cut.exitCode).not.toBe(0);
    expect(cut.body.length).toBeGreaterThan(300 * 1024 * 1024);
    expect(proxy.running).toBe(true);
    await proxy.waitForLog((l) => l.msg === "download failed; nothing cached" && JSON.stringify(l).includes("the cache disk is full and upstream did not declare the size"));
    await waitFor(() => readdirSync(path.join(mountPoint, "data", "tmp")).length === 0, 10_000, "the partial file to go");
    await waitFor(async () => !(await stats(proxy)).cache.diskFull, 15_000, "the disk to read as not full");
    const after = await stats(proxy);
    expect(after.cache.entries).toBe(20);
    expect(after.cache.bytes).toBe(100_000_000);
    expect(after.cache.maxBytes).toBeGreaterThan(500 * 1024 * 1024);
    upstream.requests.length = 0;
    for (const [digest, body] of warmByDigest) {
      const hit = await curlThrough(proxy, blobUrl(digest));
      expect(hit.headers["x-cache"]).toBe("HIT");
      expect(hit.body.equals(body)).toBe(true);
    }
    expect(upstream.requests.filter((r) => r.method === "GET")).toEqual([]);
  });

  it("its next request streams through uncached, cut only by the client, and still evicts nothing", async () => {
    const streamed = await curlThrough(proxy, blobUrl(endless), ["--max-time", "3"], 60_000);
    expect(streamed.headers["x-cache"]).toBe("BYPASS");
    expect(proxy.running).toBe(true);
    expect((await stats(proxy)).cache.entries).toBe(20);
  });
});

/**
 * EIO from the disk, which neither a read-only remount nor a full disk gives: tmp/ and blobs/ live
 * on a FUSE filesystem whose writes fail on demand (harness/eio-fs.py), the index beside them.
 */
describe.skipIf(missing.length > 0 || eioFsUnavailable())("a data disk whose writes fail with EIO", () => {
  let env: TestEnvironment;
  let eio: EioFs;
  let upstream: FakeUpstream;
  let proxy: RegcacheProcess;
  let warm: PushedImage;
  let cold: PushedImage;
  const slow = randomBytes(4_000_000);
  const slowUrl = `https://slow.test/v2/team/app/blobs/${sha256(slow)}`;

  beforeAll(async () => {
    env = new TestEnvironment("eio");
    await env.start();
    warm = await env.pushImage("team/warm", "1", [2_000_000]);
    cold = await env.pushImage("team/cold", "1", [2_000_000]);
    upstream = new FakeUpstream(env.pki, (_req, res) => {
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": slow.length });
      drip(res, slow, 40, 50);
    });
    await upstream.start();
    eio = new EioFs(env.path("eio"));
    await eio.mount();
    const dataDir = env.path("data-eio");
    mkdirSync(dataDir, { recursive: true });
    for (const dir of ["tmp", "blobs"]) {
      mkdirSync(path.join(eio.mountPoint, dir));
      symlinkSync(path.join(eio.mountPoint, dir), path.join(dataDir, dir));
    }
    proxy = env.regcache("eio", upstream.resolveArg("slow.test"), { dataDir });
    await proxy.start();
    const pulled = await skopeoPull(proxy, warm.ref, env.path("warm-0"));
    expect(pulled.ok, pulled.stderr).toBe(true);
  }, 300_000);
  afterAll(async () => {
    await proxy?.stop("SIGKILL").catch(() => undefined);
    await upstream?.stop();
    eio?.unmount();
    await env?.cleanup();
  });

  it("a cache file that cannot be created: the pull streams through uncached, what is cached is served, and caching resumes when writes work again", async () => {
    eio.failWrites();
    try {
      const pulled = await skopeoPull(proxy, cold.ref, env.path("cold-eio"));
      expect(pulled.ok, pulled.stderr).toBe(true);
      expect(corruptBlobsInLayout(env.path("cold-eio")).corrupt).toEqual([]);
      expect(proxy.requestLogs().some((l) => l.uncached === "disk-fault")).toBe(true);
      expect((await stats(proxy)).cache.diskFault?.code).toBe("EIO");
      env.registry.clearLog();
      const again = await skopeoPull(proxy, warm.ref, env.path("warm-eio"));
      expect(again.ok, again.stderr).toBe(true);
      expect(env.registry.blobGets()).toEqual([]);
      expect(proxy.running).toBe(true);
    } finally {
      eio.healWrites();
    }
    await proxy.waitForLog((l) => l.msg === "data disk writable again: caching resumes", 20_000);
  });

  it("writes that start failing in the middle of a download cut that one response; the process stays up and the next request is served", async () => {
    proxy.logs.length = 0;
    const during = curlThrough(proxy, slowUrl);
    await waitFor(() => proxy.logs.some((l) => l.msg === "request") || upstream.requests.length > 0, 10_000, "the download to start");
    await new Promise((r) => setTimeout(r, 800));
    eio.failWrites();
    try {
      const cut = await during;
      expect(cut.exitCode).not.toBe(0);
      expect(cut.body.length).toBeLessThan(slow.length);
      await proxy.waitForLog((l) => l.msg === "download failed; nothing cached" && JSON.stringify(l).includes("EIO"));
      expect(proxy.running).toBe(true);
      const next = await curlThrough(proxy, slowUrl);
      expect(next.exitCode).toBe(0);
      expect(next.headers["x-cache"]).toBe("BYPASS");
      expect(sha256(next.body)).toBe(sha256(slow));
    } finally {
      eio.healWrites();
    }
    await proxy.waitForLog((l) => l.msg === "data disk writable again: caching resumes", 20_000);
    expect((await curlThrough(proxy, slowUrl)).headers["x-cache"]).toBe("MISS");
    expect((await curlThrough(proxy, slowUrl)).headers["x-cache"]).toBe("HIT");
  });
});

/**
 * A filesystem that fails and is repaired while the index had nothing to write: its connection
 * still points at the failed filesystem, and must move to the repaired one all the same.
 */
describe.skipIf(missing.length > 0 || loopDiskUnavailable())("a disk repaired while the index had nothing to write", () => {
  let env: TestEnvironment;
  let upstream: FakeUpstream;
  let disk: LoopDisk;
  let proxy: RegcacheProcess;
  const blobs = Array.from({ length: 2 }, () => randomBytes(300_000));
  const byDigest = new Map(blobs.map((b) => [sha256(b), b]));
  const url = (b: Buffer): string => `https://slow.test/v2/team/app/blobs/${sha256(b)}`;

  beforeAll(async () => {
    env = new TestEnvironment("reopen");
    upstream = new FakeUpstream(env.pki, (req, res) => {
      const body = byDigest.get((req.url ?? "").split("/").pop() ?? "");
      if (!body) return void res.writeHead(404).end();
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": body.length });
      res.end(body);
    });
    await upstream.start();
    disk = new LoopDisk(env.path("disk.img"), env.path("disk"), 64 * 1024 * 1024);
    disk.mount();
    proxy = env.regcache("reopen", upstream.resolveArg("slow.test"), { dataDir: path.join(disk.mountPoint, "data") });
    await proxy.start();
  }, 120_000);
  afterAll(async () => {
    await proxy?.stop("SIGKILL").catch(() => undefined);
    await upstream?.stop();
    disk?.cleanup();
    await env?.cleanup();
  });

  it("the index is reopened on the repaired disk, and what is cached next is recorded there", async () => {
    disk.failReadOnly();
    expect((await curlThrough(proxy, url(blobs[0]!))).headers["x-cache"]).toBe("BYPASS");
    expect((await stats(proxy)).cache.indexWriteError).toBeNull();
    disk.repair();
    await proxy.waitForLog((l) => l.msg === "data disk writable again: caching resumes", 20_000);
    await proxy.waitForLog((l) => l.msg === "cache index reopened on its file");
    expect((await curlThrough(proxy, url(blobs[1]!))).headers["x-cache"]).toBe("MISS");
    // The index writes what changed every 5 s: by then its rows are on the repaired disk.
    expect(await proxy.stop()).toBe(0);
    await proxy.start();
    expect((await curlThrough(proxy, url(blobs[1]!))).headers["x-cache"]).toBe("HIT");
    expect((await stats(proxy)).cache.indexWriteError).toBeNull();
  });
});

/**
 * A replica whose disk cannot be written streams what it lacks through uncached; a peer's copy of
 * private content, taken while upstream is down, must still pass the offline policy first.
 */
describe.skipIf(missing.length > 0)("a replica whose disk cannot be written, upstream down", () => {
  let env: TestEnvironment;
  let a: RegcacheProcess;
  let b: RegcacheProcess;
  let secret: PushedImage;
  const ALICE = "alice:s3cret";

  beforeAll(async () => {
    const htpasswd = path.join(mkdtempSync(path.join(tmpdir(), "regcache-htpasswd-")), "htpasswd");
    writeHtpasswd(htpasswd, { alice: "s3cret" });
    env = new TestEnvironment("peer-private", { htpasswdFile: htpasswd });
    await env.start();
    await exec(process.execPath, [CLI, "ca", "init", "--certs-dir", env.path("certs")]);
    // The layer must be owned by B (the rendezvous ranking), so that A's fill is A's own and B has none.
    let ports: number[];
    do {
      secret = await env.pushImage("corp/secret", `v${Math.random().toString(36).slice(2, 8)}`, [1_000_000], 1, ALICE);
      ports = [await freePort(), await freePort()];
    } while (rankMembers(secret.layerDigests[0]!, ports.map((p) => `127.0.0.1:${p}`))[0] !== `127.0.0.1:${ports[1]}`);
    const args = (i: number): string[] => ["--peer-listen", `127.0.0.1:${ports[i]!}`, "--advertise", `127.0.0.1:${ports[i]}`, "--peer", `127.0.0.1:${ports[1 - i]}`, "--failure-threshold", "1"];
    a = env.regcache("private-a", args(0));
    b = env.regcache("private-b", args(1));
    await Promise.all([a.start(), b.start()]);
    await waitFor(() => [a, b].every((r) => r.logs.some((l) => l.msg === "peer is live")), 15_000, "the replicas to see each other");
  }, 180_000);
  afterAll(async () => env?.cleanup());

  it("an anonymous client gets the registry's refusal for a private layer, not the peer's copy streamed through", async () => {
    const tmp = path.join(b.dataDir, "tmp");
    rmSync(tmp, { recursive: true, force: true });
    writeFileSync(tmp, "not a directory\n");
    const authorized = await skopeoPull(a, secret.ref, env.path("alice"), { creds: ALICE });
    expect(authorized.ok, authorized.stderr).toBe(true);
    await env.registry.stop();
    try {
      const layer = await curlThrough(b, `https://${REGISTRY_HOST}/v2/${secret.repo}/blobs/${secret.layerDigests[0]}`);
      expect([401, 403]).toContain(layer.status);
      expect(layer.body.length).toBeLessThan(1_000_000);
    } finally {
      await env.registry.start();
    }
  });
});
