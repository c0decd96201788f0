import { readdirSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { corruptBlobsInLayout, skopeoPull } from "./harness/clients.js";
import { TestEnvironment, type PushedImage } from "./harness/environment.js";
import type { RegcacheProcess } from "./harness/regcache-process.js";
import { fillDisk, mountTmpfs, tmpfsUnavailable, unmountTmpfs } from "./harness/tmpfs.js";
import { missingTools } from "./harness/tools.js";

const missing = missingTools("docker-registry", "skopeo", "openssl", "curl");

/** Every blob file under the data dir, by digest. */
function cachedFiles(dataDir: string): Map<string, number> {
  const files = new Map<string, number>();
  const root = path.join(dataDir, "blobs", "sha256");
  for (const prefix of readdirSync(root)) {
    for (const hex of readdirSync(path.join(root, prefix))) files.set(`sha256:${hex}`, statSync(path.join(root, prefix, hex)).size);
  }
  return files;
}

/**
 * A data dir on a 200 MB tmpfs with --max-cache-size 20GiB: the disk, not the bound, limits the
 * cache. A 350 MB image must still pull whole; what does not fit streams through uncached.
 */
describe.skipIf(missing.length > 0 || tmpfsUnavailable())("a cache disk smaller than --max-cache-size", () => {
  let env: TestEnvironment;
  let big: PushedImage;
  let small: PushedImage;
  let proxy: RegcacheProcess;
  let mountPoint: string;

  beforeAll(async () => {
    env = new TestEnvironment("small-disk");
    await env.start();
    big = await env.pushImage("team/big", "v1", [150_000_000, 120_000_000, 80_000_000]);
    small = await env.pushImage("team/small", "v1", [2_000_000]);
    mountPoint = env.path("tmpfs");
    mountTmpfs(mountPoint, 200 * 1024 * 1024);
    proxy = env.regcache("small-disk", ["--max-cache-size", "20GiB"], { dataDir: path.join(mountPoint, "data") });
  }, 600_000);
  afterAll(async () => {
    await proxy?.stop("SIGKILL").catch(() => undefined);
    if (mountPoint) unmountTmpfs(mountPoint);
    await env?.cleanup();
  });

  it("warns that the bound is lowered, and pulls a 350 MB image whole, streaming what does not fit", async () => {
    await proxy.start();
    expect(proxy.logs.some((l) => l.msg === "the disk holds less than --max-cache-size; the cache is bounded to what fits")).toBe(true);
    const pulled = await skopeoPull(proxy, big.ref, env.path("big"), { timeoutMs: 300_000 });
    expect(pulled.ok, `${pulled.stderr}\n${proxy.logs.filter((l) => l.level >= 40 || l.uncached).map((l) => JSON.stringify(l)).join("\n")}`).toBe(true);
    expect(corruptBlobsInLayout(env.path("big")).corrupt).toEqual([]);
    const uncached = proxy.requestLogs().filter((l) => l.uncached === "no-space" || l.uncached === "too-large");
    expect(uncached.length).toBeGreaterThan(0);
    expect((await fetch(`${proxy.proxyUrl}/readyz`)).status).toBe(200);
  });

  it("the index matches the files on disk", async () => {
    const stats = (await (await fetch(`${proxy.proxyUrl}/api/stats`)).json()) as { cache: { entries: number; bytes: number } };
    const files = cachedFiles(proxy.dataDir);
    expect(stats.cache.entries).toBe(files.size);
    expect(stats.cache.bytes).toBe([...files.values()].reduce((a, b) => a + b, 0));
  });

  it("restarts on a full disk and serves a small image afterwards", async () => {
    await proxy.stop();
    const filler = fillDisk(mountPoint);
    try {
      await proxy.start();
      expect((await fetch(`${proxy.proxyUrl}/healthz`)).status).toBe(200);
      // Nothing fits now: the small image streams through, and the process stays up.
      const pulled = await skopeoPull(proxy, small.ref, env.path("small-full"));
      expect(pulled.ok, pulled.stderr).toBe(true);
      expect(corruptBlobsInLayout(env.path("small-full")).corrupt).toEqual([]);
      expect((await fetch(`${proxy.proxyUrl}/healthz`)).status).toBe(200);
    } finally {
      rmSync(filler, { force: true });
    }
    const again = await skopeoPull(proxy, small.ref, env.path("small-freed"));
    expect(again.ok, again.stderr).toBe(true);
    expect(corruptBlobsInLayout(env.path("small-freed")).corrupt).toEqual([]);
  });
});
