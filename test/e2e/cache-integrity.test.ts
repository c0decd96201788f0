import { createHash } from "node:crypto";
import { existsSync, readdirSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { corruptBlobsInLayout, curlThrough, skopeoPull } from "./harness/clients.js";
import { TestEnvironment, type PushedImage } from "./harness/environment.js";
import { blobFile, flipByte } from "./harness/cache-files.js";
import type { RegcacheProcess } from "./harness/regcache-process.js";
import { missingTools } from "./harness/tools.js";

const missing = missingTools("docker-registry", "skopeo", "openssl", "curl");



describe.skipIf(missing.length > 0)("damaged cache files are never served whole, and heal", () => {
  let env: TestEnvironment;
  let image: PushedImage;

  beforeAll(async () => {
    env = new TestEnvironment("integrity");
    await env.start();
    // A layer over 4 MiB is checked while served; the manifest and config (small) before every response.
    image = await env.pushImage("team/app", "v1", [6_000_000, 200_000]);
  });
  afterAll(async () => env?.cleanup());

  const pull = (proxy: RegcacheProcess, name: string) => skopeoPull(proxy, image.ref, env.path(name));
  const bigLayer = (): string => image.layerDigests[0]!;

  it("a byte flipped while regcache was stopped: the layer's response is cut, the file quarantined, the next pull is right", async () => {
    const proxy = env.regcache("flip-stopped");
    await proxy.start();
    expect((await pull(proxy, "warm")).ok).toBe(true);
    await proxy.stop();
    flipByte(blobFile(proxy, bigLayer()), 3_000_000);
    flipByte(blobFile(proxy, image.manifests[0]!.digest), 20);
    await proxy.start();
    env.registry.clearLog();
    const first = await pull(proxy, "after-flip-1");
    // The damaged manifest is refetched before anything is sent; the damaged layer can only be cut.
    expect(first.ok).toBe(false);
    expect(first.stderr).not.toMatch(/digest did not match/i);
    await proxy.waitForLog((l) => l.msg === "cached file does not match its digest; quarantined, will be refetched" && l.digest === bigLayer());
    await proxy.waitForLog((l) => l.msg === "cached file does not match its digest; quarantined, will be refetched" && l.digest === image.manifests[0]!.digest);
    const second = await pull(proxy, "after-flip-2");
    expect(second.ok, second.stderr).toBe(true);
    expect(corruptBlobsInLayout(env.path("after-flip-2")).corrupt).toEqual([]);
    expect(env.registry.blobGets(bigLayer())).toHaveLength(1);
    expect(readdirSync(path.join(proxy.dataDir, "quarantine")).some((f) => f.startsWith(bigLayer().slice(7)))).toBe(true);
    // The refetched file is right: a third pull is all hits.
    env.registry.clearLog();
    expect((await pull(proxy, "after-flip-3")).ok).toBe(true);
    expect(env.registry.blobGets()).toEqual([]);
    await proxy.stop();
  });

  it("a byte flipped while running: the next GET is cut before its last byte, the file quarantined, and the following GET is right", async () => {
    const proxy = env.regcache("flip-live");
    await proxy.start();
    expect((await pull(proxy, "live-warm")).ok).toBe(true);
    const url = `https://quay.test/v2/${image.repo}/blobs/${bigLayer()}`;
    // Served once since it was stored: verified this run, and not hashed again while it looks the same.
    expect((await curlThrough(proxy, url)).headers["x-cache"]).toBe("HIT");
    const file = blobFile(proxy, bigLayer());
    const size = statSync(file).size;
    flipByte(file, 4_000_000);
    const cut = await curlThrough(proxy, url);
    expect(cut.status).toBe(200);
    expect(cut.exitCode, "curl must see the body cut short").not.toBe(0);
    expect(cut.body.length).toBeLessThan(size);
    await proxy.waitForLog((l) => l.msg === "cached file does not match its digest; quarantined, will be refetched" && l.digest === bigLayer());
    expect(readdirSync(path.join(proxy.dataDir, "quarantine")).some((f) => f.startsWith(bigLayer().slice(7)))).toBe(true);
    const right = await curlThrough(proxy, url);
    expect(right.exitCode).toBe(0);
    expect(`sha256:${createHash("sha256").update(right.body).digest("hex")}`).toBe(bigLayer());
    await proxy.stop();
  });

  it("a byte flipped while running is found by the scrub, and never served whole", async () => {
    const proxy = env.regcache("flip-running", ["--verify-interval", "2s"]);
    await proxy.start();
    expect((await pull(proxy, "run-warm")).ok).toBe(true);
    flipByte(blobFile(proxy, bigLayer()), 10);
    await proxy.waitForLog((l) => l.msg === "cached file does not match its digest; quarantined, will be refetched" && l.digest === bigLayer(), 20_000);
    const again = await pull(proxy, "run-after");
    expect(again.ok, again.stderr).toBe(true);
    expect(corruptBlobsInLayout(env.path("run-after")).corrupt).toEqual([]);
    await proxy.stop();
  });

  it("a cached file deleted while running is a miss: the next pull refetches it", async () => {
    const proxy = env.regcache("deleted");
    await proxy.start();
    expect((await pull(proxy, "del-warm")).ok).toBe(true);
    rmSync(blobFile(proxy, bigLayer()));
    rmSync(blobFile(proxy, image.manifests[0]!.digest));
    env.registry.clearLog();
    const again = await pull(proxy, "del-after");
    expect(again.ok, again.stderr).toBe(true);
    expect(corruptBlobsInLayout(env.path("del-after")).corrupt).toEqual([]);
    expect(env.registry.blobGets(bigLayer())).toHaveLength(1);
    expect(existsSync(blobFile(proxy, bigLayer()))).toBe(true);
    const line = await proxy.waitForLog((l) => l.msg === "cached file missing or resized; dropped from the index" && l.digest === bigLayer());
    expect(line.foundBytes).toBeNull();
    await proxy.stop();
  });

  it("a ranged read of a damaged, unverified file releases nothing", async () => {
    const proxy = env.regcache("range");
    await proxy.start();
    expect((await pull(proxy, "range-warm")).ok).toBe(true);
    await proxy.stop();
    flipByte(blobFile(proxy, bigLayer()), 5_000_000);
    await proxy.start();
    const res = await curlThrough(proxy, `https://quay.test/v2/team/app/blobs/${bigLayer()}`, ["-H", "Range: bytes=100-199"]);
    expect(res.status === 206 && res.exitCode === 0).toBe(false);
    expect(res.body.length).toBe(0);
    await proxy.stop();
  });
});
