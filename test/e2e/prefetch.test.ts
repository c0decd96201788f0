import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { layoutDigests, runPrefetch, skopeoPull, TestContainerd } from "./harness/clients.js";
import { TestEnvironment, type PushedImage } from "./harness/environment.js";
import { CLI, type RegcacheProcess } from "./harness/regcache-process.js";
import { containerdUnavailable, missingTools } from "./harness/tools.js";

const exec = promisify(execFile);

const missing = missingTools("docker-registry", "skopeo", "script", "openssl");


describe.skipIf(missing.length > 0)("regcache prefetch", () => {
  let env: TestEnvironment;
  let proxy: RegcacheProcess;
  let multi: PushedImage;
  let single: PushedImage;

  beforeAll(async () => {
    env = new TestEnvironment("prefetch");
    await env.start();
    multi = await env.pushImage("org/api", "3.1", [250_000, 80_000], 2);
    single = await env.pushImage("org/worker", "9", [120_000]);
    proxy = env.regcache("prefetch");
    await proxy.start();
  });
  afterAll(async () => env?.cleanup());

  it("fails with a non-zero exit and a summary when an image cannot be pulled", async () => {
    const result = await runPrefetch(["--proxy", proxy.proxyUrl, "quay.test/org/missing:1", "not a ref!"]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain("prefetched 0/2 images");
    expect(result.stderr).toMatch(/2 image\(s\) failed/);
    expect(result.stderr).toContain("quay.test/org/missing:1");
    // One readable line per failure: status, the registry's code and message, the image named once, no raw JSON.
    const line = result.stdout.split("\n").find((l) => l.startsWith("failed quay.test/org/missing:1"))!;
    expect(line).toMatch(/^failed quay\.test\/org\/missing:1: GET \/v2\/org\/missing\/manifests\/1 answered 40[14] [A-Z_]+: .+$/);
    expect(line).not.toMatch(/[{}]/);
    expect(line.split("quay.test/org/missing:1")).toHaveLength(2);
  });

  it("on a terminal: progress in bytes with the total, rate and time left, redrawn at most ten times a second", async () => {
    // 24 MB arrive in some 1500 pieces: one redraw each would be 1500 lines of output.
    const big = await env.pushImage("org/big", "1", [24_000_000]);
    const command = [process.execPath, CLI, "prefetch", "--proxy", proxy.proxyUrl, big.ref].map((a) => `'${a}'`).join(" ");
    const started = Date.now();
    const { stdout } = await exec("script", ["-qec", command, "/dev/null"], { timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
    const elapsedMs = Date.now() - started;
    const redraws = stdout.split("\r\x1b[2K").filter((s) => s.startsWith(`${big.ref} [`));
    expect(redraws.length).toBeGreaterThanOrEqual(1);
    expect(redraws.length).toBeLessThanOrEqual(Math.ceil(elapsedMs / 100) + 1);
    // The manifest declares the layer's and the config's sizes: the total (~22.9 MiB) is known from the start.
    expect(redraws[0]).toMatch(new RegExp(`^${big.ref.replace(/[.]/g, "\\.")} \\[[#-]{20}\\] [\\d.]+ (B|KiB|MiB) / 2\\d\\.\\d MiB \\(\\d+%\\)`));
    expect(redraws.some((r) => /, [\d.]+ (B|KiB|MiB)\/s, ETA \d+s/.test(r))).toBe(redraws.length > 1);
    expect(stdout).toContain(`ok ${big.ref} ${big.topDigest}`);
  });

  it("without a terminal: no control characters, only the result lines", async () => {
    const result = await runPrefetch(["--proxy", proxy.proxyUrl, single.ref]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout + result.stderr).not.toMatch(/[\r\x1b]/);
    expect(result.stdout).toContain(`ok ${single.ref} ${single.topDigest}`);
  });

  it("pre-loads images from arguments and a file; every one pulls during an outage", async () => {
    const list = env.path("images.txt");
    writeFileSync(list, `# what the cluster runs\n${single.ref}\n`);
    const result = await runPrefetch(["--proxy", proxy.proxyUrl, "--file", list, multi.ref]);
    expect(result.stderr).not.toMatch(/fail/i);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`ok ${multi.ref} ${multi.topDigest} manifests=2`);
    expect(result.stdout).toContain(`ok ${single.ref} ${single.topDigest} manifests=1 blobs=2`);
    expect(result.stdout).toContain("prefetched 2/2 images");

    await env.registry.stop();
    const a = await skopeoPull(proxy, multi.ref, env.path("out-multi"), { all: true });
    expect(a.ok, a.stderr).toBe(true);
    expect(layoutDigests(env.path("out-multi")).sort()).toEqual([...multi.allDigests].sort());
    const b = await skopeoPull(proxy, single.ref, env.path("out-single"));
    expect(b.ok, b.stderr).toBe(true);
    if (!containerdUnavailable()) {
      const containerd = new TestContainerd(env.path("containerd"));
      await containerd.start();
      try {
        const c = await containerd.pull(proxy, multi.ref, { allPlatforms: true });
        expect(c.ok, c.stderr).toBe(true);
      } finally {
        await containerd.stop();
      }
    }
  });
});
