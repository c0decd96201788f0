import { randomBytes } from "node:crypto";
import { readdirSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { corruptBlobsInLayout, skopeoPull } from "./harness/clients.js";
import { TestEnvironment, type PushedImage } from "./harness/environment.js";
import type { RegcacheProcess } from "./harness/regcache-process.js";
import { fillDisk, mountTmpfs, tmpfsUnavailable, unmountTmpfs } from "./harness/tmpfs.js";
import { missingTools } from "./harness/tools.js";

const missing = missingTools("docker-registry", "skopeo", "openssl", "curl");

/** What regcache's own /api/stats says. */
async function stats(proxy: RegcacheProcess): Promise<{ cache: { entries: number; indexWriteError: string | null } }> {
  const res = await fetch(`${proxy.proxyUrl}/api/stats`);
  expect(res.status).toBe(200);
  return (await res.json()) as { cache: { entries: number; indexWriteError: string | null } };
}

async function healthz(proxy: RegcacheProcess): Promise<number> {
  return (await fetch(`${proxy.proxyUrl}/healthz`)).status;
}

describe.skipIf(missing.length > 0)("a damaged index.sqlite never stops start-up", () => {
  let env: TestEnvironment;
  let proxy: RegcacheProcess;
  let image: PushedImage;
  let pulls = 0;

  beforeAll(async () => {
    env = new TestEnvironment("damaged");
    await env.start();
    image = await env.pushImage("team/app", "1.0", [400_000, 200_000, 100_000]);
    proxy = env.regcache();
    await proxy.start();
    expect((await skopeoPull(proxy, image.ref, env.path("pull-0"))).ok).toBe(true);
    expect(env.registry.blobGets().length).toBeGreaterThan(0);
  });
  afterAll(async () => env?.cleanup());

  const damages: [string, (file: string) => void][] = [
    ["truncated to half", (file) => truncateSync(file, Math.floor(statSync(file).size / 2))],
    ["overwritten with random bytes", (file) => writeFileSync(file, randomBytes(statSync(file).size))],
    ["replaced with garbage text", (file) => writeFileSync(file, "regcache index? no: garbage\n".repeat(400))],
  ];

  it.each(damages)("%s: regcache starts, warns, and serves the image from its files (zero upstream blob GETs)", async (_name, damage) => {
    expect(await proxy.stop()).toBe(0);
    const indexFile = path.join(proxy.dataDir, "index.sqlite");
    const asideBefore = readdirSync(proxy.dataDir).filter((n) => n.includes(".corrupt-")).length;
    damage(indexFile);

    await proxy.start();
    const warning = await proxy.waitForLog((l) => l.level === 40 && l.msg.startsWith("cache index damaged"));
    expect(warning.msg).toContain("tag records and access verdicts are lost");
    expect(readdirSync(proxy.dataDir).filter((n) => n.startsWith("index.sqlite.corrupt-")).length).toBeGreaterThan(asideBefore);
    const recovered = await proxy.waitForLog((l) => l.msg === "cache recovered");
    expect(recovered.filesReindexed).toBeGreaterThan(0);
    expect(recovered.filesRemoved).toBe(0);

    env.registry.clearLog();
    const dest = env.path(`pull-${++pulls}`);
    const pull = await skopeoPull(proxy, image.ref, dest);
    expect(pull.ok, pull.stderr).toBe(true);
    expect(corruptBlobsInLayout(dest).corrupt).toEqual([]);
    expect(env.registry.blobGets()).toEqual([]);
  });
});

describe.skipIf(missing.length > 0 || tmpfsUnavailable())("a full data disk", () => {
  let env: TestEnvironment;
  let proxy: RegcacheProcess;
  let first: PushedImage;
  let second: PushedImage;
  let disk: string;
  let filler: string;
  let pulls = 0;
  const pull = async (image: PushedImage): Promise<void> => {
    const dest = env.path(`full-pull-${++pulls}`);
    const result = await skopeoPull(proxy, image.ref, dest);
    expect(result.ok, result.stderr).toBe(true);
    expect(corruptBlobsInLayout(dest).corrupt).toEqual([]);
  };
  /** Long enough for the index's 5-second flush to run against the full disk. */
  const pastAFlush = (): Promise<void> => new Promise((r) => setTimeout(r, 6_000));

  beforeAll(async () => {
    env = new TestEnvironment("full-disk");
    await env.start();
    first = await env.pushImage("team/first", "1.0", [400_000, 200_000]);
    second = await env.pushImage("team/second", "1.0", [300_000, 100_000]);
    disk = env.path("data-full");
    mountTmpfs(disk, 64 * 1024 * 1024);
    proxy = env.regcache("full");
  });
  afterAll(async () => {
    await proxy?.stop();
    if (disk) unmountTmpfs(disk);
    await env?.cleanup();
  });

  it("a running regcache keeps serving when the disk fills: index writes fail with a handled warning, never a crash", async () => {
    await proxy.start();
    await pull(first);
    filler = fillDisk(disk);

    env.registry.clearLog();
    await pull(first);
    expect(env.registry.blobGets()).toEqual([]);
    await pastAFlush();
    await pull(first);

    expect(proxy.running).toBe(true);
    expect(await healthz(proxy)).toBe(200);
    const warning = await proxy.waitForLog((l) => l.msg.startsWith("cache index write failed"));
    expect(warning).toMatchObject({ level: 40, code: "SQLITE_FULL" });
    expect(proxy.logs.filter((l) => l.msg.startsWith("cache index write failed"))).toHaveLength(1);
    expect((await stats(proxy)).cache.indexWriteError).toMatch(/SQLITE_FULL/);
    expect(proxy.logs.filter((l) => l.level >= 50)).toEqual([]);
  });

  it("a restart on the full disk starts and serves, with this run's index in memory", async () => {
    expect(await proxy.stop()).toBe(0);
    // The clean stop checkpointed the WAL away, and what that freed is taken again: sqlite cannot create a new WAL.
    fillDisk(disk);
    await proxy.start();
    expect(await healthz(proxy)).toBe(200);
    const warning = await proxy.waitForLog((l) => l.level === 40 && l.msg.startsWith("cache index cannot be written"));
    expect(warning.rowsRead).toBeGreaterThan(0);
    expect((await stats(proxy)).cache.indexWriteError).not.toBeNull();

    env.registry.clearLog();
    await pull(first);
    expect(env.registry.blobGets()).toEqual([]);
    await pastAFlush();
    await pull(first);
    expect(proxy.running).toBe(true);
    expect(proxy.logs.filter((l) => l.level >= 50)).toEqual([]);
  });

  it("once space is back, images pull and are cached, on an index on disk again after the next start", async () => {
    rmSync(filler);
    await pull(second);
    expect(await proxy.stop()).toBe(0);
    await proxy.start();
    expect(proxy.logs.some((l) => l.msg.startsWith("cache index cannot be written"))).toBe(false);
    expect((await stats(proxy)).cache.indexWriteError).toBeNull();

    await pull(second);
    env.registry.clearLog();
    await pull(second);
    await pull(first);
    expect(env.registry.blobGets()).toEqual([]);
  });
});
