import { execFile } from "node:child_process";
import { existsSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatBytes } from "../../src/cli/format-bytes.js";
import { corruptBlobsInLayout, layoutTopDigest, skopeoPull, skopeoPush } from "./harness/clients.js";
import { TestEnvironment, type PushedImage } from "./harness/environment.js";
import { waitFor } from "./harness/ports.js";
import { blobFile, flipByte } from "./harness/cache-files.js";
import { CLI, type RegcacheProcess } from "./harness/regcache-process.js";
import { IN_CI, missingTools } from "./harness/tools.js";

const exec = promisify(execFile);
const missing = missingTools("docker-registry", "skopeo", "openssl", "curl");

/** An address of this machine that is not loopback: a request to it comes from it, too. */
const external = Object.values(networkInterfaces())
  .flat()
  .find((a) => a && !a.internal && a.family === "IPv4")?.address;
if (!external && IN_CI) throw new Error("CI=true but this machine has no non-loopback IPv4 address to test the admin API's loopback rule with");

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `regcache cache ...` against `proxy`; a failure is a result to assert on. */
function cacheCli(proxy: RegcacheProcess, args: string[], tokenFile?: string): Promise<Run> {
  const full = [CLI, "cache", ...args, "--proxy", proxy.proxyUrl, ...(tokenFile ? ["--admin-token", tokenFile] : [])];
  return new Promise((resolve) => {
    execFile(process.execPath, full, { timeout: 60_000 }, (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === "number" ? err.code : null) : 0, stdout, stderr }));
  });
}

/** Status of a plain GET (or `method`) to the proxy port, straight, never through a proxy. */
async function status(url: string, extra: string[] = []): Promise<number> {
  const { stdout } = await exec("curl", ["-s", "--noproxy", "*", "-o", "/dev/null", "-w", "%{http_code}", ...extra, url], { timeout: 30_000 });
  return Number(stdout);
}


const cachedBytes = (proxy: RegcacheProcess, digests: string[]): number => digests.reduce((sum, d) => sum + statSync(blobFile(proxy, d)).size, 0);


interface ImageRow {
  image: string;
  digest: string;
  size: number;
  cachedDigests: number;
  missingDigests: number;
  manifestCached: boolean;
  lastAccess: number | null;
  hits: number;
}

describe.skipIf(missing.length > 0)("`regcache cache` and the cache admin API, after real pulls", () => {
  let env: TestEnvironment;
  let proxy: RegcacheProcess;
  let app: PushedImage;
  let multi: PushedImage;
  let solo: PushedImage;
  /** quay.test/team/copy:latest: app's very manifest pushed to another repository, so it shares every digest. */
  const copyRef = "quay.test/team/copy:latest";

  const pull = async (ref: string, dest: string): Promise<void> => {
    const result = await skopeoPull(proxy, ref, env.path(dest));
    expect(result.ok, result.stderr).toBe(true);
    expect(corruptBlobsInLayout(env.path(dest)).corrupt).toEqual([]);
  };
  const images = async (): Promise<ImageRow[]> => {
    const run = await cacheCli(proxy, ["ls", "--json"]);
    expect(run.code, run.stderr).toBe(0);
    return (JSON.parse(run.stdout) as { images: ImageRow[] }).images;
  };
  const blobDigests = async (): Promise<string[]> => {
    const run = await cacheCli(proxy, ["ls", "--blobs", "--json"]);
    expect(run.code, run.stderr).toBe(0);
    return (JSON.parse(run.stdout) as { blobs: { digest: string }[] }).blobs.map((b) => b.digest);
  };

  beforeAll(async () => {
    env = new TestEnvironment("cache-admin");
    await env.start();
    app = await env.pushImage("team/app", "v1", [300_000, 100_000]);
    multi = await env.pushImage("team/multi", "2", [150_000], 2);
    solo = await env.pushImage("team/solo", "1", [200_000, 50_000]);
    proxy = env.regcache("admin");
    await proxy.start();
    await pull(app.ref, "app");
    await skopeoPush(env.path("app"), "latest", env.registry.url, "team/copy", env.pki.certDir);
    await pull(copyRef, "copy");
    expect(layoutTopDigest(env.path("copy"))).toBe(app.topDigest);
    await pull(multi.ref, "multi");
    await pull(solo.ref, "solo");
    // Tag answers are recorded once the manifest is stored, a moment after the client has it.
    await waitFor(async () => (await images()).length === 4, 10_000, "four tags listed");
  });
  afterAll(async () => env?.cleanup());

  it("`cache ls` lists each pulled tag with its digest, cached size, last use and hits", async () => {
    const rows = await images();
    expect(rows.map((r) => r.image)).toEqual([copyRef, app.ref, multi.ref, solo.ref].sort());
    const appRow = rows.find((r) => r.image === app.ref)!;
    expect(appRow).toMatchObject({ digest: app.topDigest, manifestCached: true, size: cachedBytes(proxy, app.allDigests), cachedDigests: app.allDigests.length, missingDigests: 0 });
    expect(appRow.lastAccess).toBeGreaterThan(Date.now() - 120_000);
    // The copy's manifest was served from the cache once: when skopeo pulled the copy (the tag's digest was known).
    expect(rows.find((r) => r.image === copyRef)!.hits).toBeGreaterThanOrEqual(1);
    // An index: the manifest of this machine's platform and its blobs are cached, the other platform's manifest not.
    const pulled = readdirSync(path.join(env.path("multi"), "blobs", "sha256")).map((hex) => `sha256:${hex}`);
    const multiRow = rows.find((r) => r.image === multi.ref)!;
    expect(multi.manifests.filter((m) => pulled.includes(m.digest))).toHaveLength(1);
    expect(multiRow).toMatchObject({ digest: multi.topDigest, cachedDigests: pulled.length + 1, missingDigests: 1, size: cachedBytes(proxy, [multi.topDigest, ...pulled]) });

    const table = await cacheCli(proxy, ["ls"]);
    expect(table.code, table.stderr).toBe(0);
    const lines = table.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^IMAGE +DIGEST +SIZE +LAST USE +HITS$/);
    const line = lines.find((l) => l.startsWith(`${app.ref} `))!;
    expect(line).toContain(` ${app.topDigest.slice(0, 19)} `);
    expect(line).toContain(` ${formatBytes(appRow.size)} `);
    expect(line).toMatch(/ \d+s ago +\d+$/);
    // Aligned: every row's digest starts under the header's DIGEST.
    for (const l of lines.slice(1)) expect(l.indexOf("sha256:")).toBe(lines[0]!.indexOf("DIGEST"));
  });

  it("`cache ls --blobs` lists every cached digest with the tags that name it", async () => {
    const run = await cacheCli(proxy, ["ls", "--blobs", "--json"]);
    const blobs = (JSON.parse(run.stdout) as { blobs: { digest: string; size: number; links: string[]; images: string[]; verifiedAt: number | null }[] }).blobs;
    for (const digest of app.allDigests) {
      const blob = blobs.find((b) => b.digest === digest)!;
      expect(blob.images.sort()).toEqual([copyRef, app.ref].sort());
      expect(blob.links).toContain("quay.test/team/app");
      expect(blob.size).toBe(statSync(blobFile(proxy, digest)).size);
    }
    expect(blobs.length).toBe(readdirSync(path.join(proxy.dataDir, "blobs", "sha256")).flatMap((d) => readdirSync(path.join(proxy.dataDir, "blobs", "sha256", d))).length);
  });

  it("`cache rm IMAGE` removes what only that tag names; the next pull fetches it from upstream again", async () => {
    const bytes = cachedBytes(proxy, solo.allDigests);
    const run = await cacheCli(proxy, ["rm", solo.ref]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toBe(`removed ${solo.ref}: ${solo.allDigests.length} files, ${formatBytes(bytes)}\n`);
    for (const digest of solo.allDigests) expect(existsSync(blobFile(proxy, digest))).toBe(false);
    expect((await images()).map((r) => r.image)).not.toContain(solo.ref);
    expect(await blobDigests()).not.toContain(solo.layerDigests[0]);

    env.registry.clearLog();
    await pull(solo.ref, "solo-again");
    for (const digest of solo.layerDigests) expect(env.registry.blobGets(digest)).toHaveLength(1);
    await waitFor(async () => (await images()).some((r) => r.image === solo.ref), 10_000, "the tag listed again");
  });

  it("`cache rm IMAGE` keeps what another cached tag names", async () => {
    const run = await cacheCli(proxy, ["rm", app.ref, "--json"]);
    expect(run.code, run.stderr).toBe(0);
    const removed = JSON.parse(run.stdout) as { removed: unknown[]; keptShared: string[]; freedBytes: number };
    expect(removed.removed).toEqual([]);
    expect(removed.freedBytes).toBe(0);
    expect(removed.keptShared.sort()).toEqual([...app.allDigests].sort());
    expect((await images()).map((r) => r.image)).toEqual([copyRef, multi.ref, solo.ref].sort());

    env.registry.clearLog();
    await pull(copyRef, "copy-again");
    expect(env.registry.blobGets()).toEqual([]);
  });

  it("`cache rm DIGEST` removes that one file: only it is fetched again", async () => {
    // The layer of the platform this machine pulled.
    const layer = multi.layerDigests.find((d) => existsSync(blobFile(proxy, d)))!;
    const run = await cacheCli(proxy, ["rm", layer]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`^removed ${layer}: [\\d.]+ KiB\\n$`));
    expect(existsSync(blobFile(proxy, layer))).toBe(false);
    const again = await cacheCli(proxy, ["rm", layer]);
    expect(again).toMatchObject({ code: 1, stderr: `regcache: ${proxy.proxyUrl}/api/cache/blobs/${layer} answered 404: ${layer} is not cached\n` });

    env.registry.clearLog();
    await pull(multi.ref, "multi-again");
    expect(env.registry.blobGets().map((e) => e.path)).toEqual([`/v2/team/multi/blobs/${layer}`]);
  });

  it("`cache verify` finds a flipped byte, quarantines the file, and the next pull is right", async () => {
    const layer = app.layerDigests[0]!;
    flipByte(blobFile(proxy, layer), 1_000);
    const run = await cacheCli(proxy, ["verify"]);
    expect(run.code, "a check that found damage fails").toBe(1);
    expect(run.stderr).toBe("");
    expect(run.stdout).toMatch(/^checked \d+ files \([\d.]+ KiB\) in [\d.]+ s: 1 damaged, 0 missing\n/);
    expect(run.stdout).toContain(`\ndamaged  ${layer}  `);
    expect(existsSync(blobFile(proxy, layer))).toBe(false);
    expect(readdirSync(path.join(proxy.dataDir, "quarantine")).some((f) => f.startsWith(layer.slice(7)))).toBe(true);
    expect(await blobDigests()).not.toContain(layer);

    env.registry.clearLog();
    await pull(copyRef, "copy-after-verify");
    expect(env.registry.blobGets(layer)).toHaveLength(1);
    const clean = await cacheCli(proxy, ["verify", "--json"]);
    expect(JSON.parse(clean.stdout)).toMatchObject({ damaged: [], missing: [] });
    expect(clean.code, "a clean check succeeds").toBe(0);
  });

  it("the stats page links to the list, which a browser on the proxy's host may follow", async () => {
    const page = (await exec("curl", ["-sf", "--noproxy", "*", `${proxy.proxyUrl}/`])).stdout;
    expect(page).toContain('<a href="/api/cache/images">');
    const { stdout } = await exec("curl", ["-sf", "--noproxy", "*", "-H", "Accept: text/html", `${proxy.proxyUrl}/api/cache/images`]);
    expect((JSON.parse(stdout) as { images: unknown[] }).images.length).toBeGreaterThan(0);
  });

  it("usage errors exit 2 before asking the proxy", async () => {
    expect(await cacheCli(proxy, ["rm", "sha256:abc"])).toMatchObject({ code: 2, stderr: 'regcache: "sha256:abc" is not a whole digest (sha256:<64 hex>); `regcache cache ls --blobs` lists them in full\n' });
    expect((await cacheCli(proxy, ["rm", "Not An/Image"])).code).toBe(2);
  });
});

describe.skipIf(missing.length > 0)("who may use the cache admin API", () => {
  let env: TestEnvironment;
  beforeAll(async () => {
    env = new TestEnvironment("cache-admin-access");
  });
  afterAll(async () => env?.cleanup());

  it("with --admin-token, every request must carry the token, loopback included", async () => {
    const tokenFile = env.path("admin-token");
    writeFileSync(tokenFile, "s3cret-token-0123456789\n");
    const wrongFile = env.path("wrong-token");
    writeFileSync(wrongFile, "s3cret-token-0123456780\n");
    const proxy = env.regcache("token", ["--admin-token", tokenFile]);
    await proxy.start();
    const refused = `regcache: ${proxy.proxyUrl}/api/cache/images answered 401: the cache admin API needs Authorization: Bearer <the token in the --admin-token file>\n`;
    expect(await cacheCli(proxy, ["ls"])).toMatchObject({ code: 1, stderr: refused });
    expect(await cacheCli(proxy, ["ls"], wrongFile)).toMatchObject({ code: 1, stderr: refused });
    expect(await cacheCli(proxy, ["ls"], tokenFile)).toMatchObject({ code: 0, stdout: "IMAGE  DIGEST  SIZE  LAST USE  HITS\n" });
    expect(await status(`${proxy.proxyUrl}/api/cache/verify`, ["-X", "POST"])).toBe(401);
    expect(await status(`${proxy.proxyUrl}/api/cache/verify`, ["-X", "POST", "-H", "Authorization: Bearer s3cret-token-0123456789"])).toBe(200);
    await proxy.stop();
  });

  it.skipIf(!external)("without a token, only loopback clients are answered, and never a web page", async () => {
    const proxy = env.regcache("open", ["--listen", "0.0.0.0:0"]);
    await proxy.start();
    const port = proxy.port;
    expect(await status(`http://${external}:${port}/api/cache/images`)).toBe(403);
    expect(await status(`http://${external}:${port}/api/cache/blobs/sha256:${"0".repeat(64)}`, ["-X", "DELETE"])).toBe(403);
    // The rest of the proxy port is not restricted.
    expect(await status(`http://${external}:${port}/api/stats`)).toBe(200);
    expect(await status(`http://127.0.0.1:${port}/api/cache/images`)).toBe(200);
    expect(await status(`http://127.0.0.1:${port}/api/cache/verify`, ["-X", "POST", "-H", "Origin: http://attacker.example"])).toBe(403);
    await proxy.stop();
  });

  it("an unreadable --admin-token file stops serve with one line", async () => {
    const missingFile = env.path("no-such-token");
    const run = await new Promise<Run>((resolve) =>
      execFile(process.execPath, [CLI, "serve", "--listen", "127.0.0.1:0", "--data-dir", env.path("data-bad"), "--certs-dir", env.path("certs"), "--admin-token", missingFile], { timeout: 30_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === "number" ? err.code : null) : 0, stdout, stderr }),
      ),
    );
    expect(run).toMatchObject({ code: 1, stderr: `regcache: cannot read --admin-token ${missingFile}: no such file or directory\n` });
  });
});
