import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { curlThrough, type CurlResult } from "./harness/clients.js";
import { TestEnvironment } from "./harness/environment.js";
import { drip, FakeUpstream } from "./harness/fake-upstream.js";
import { waitFor } from "./harness/ports.js";
import { CLI } from "./harness/regcache-process.js";
import { missingTools } from "./harness/tools.js";

const missing = missingTools("openssl", "curl", "faketime");
const exec = promisify(execFile);

/** Debian's libfaketime, multithreaded flavour (Node runs threads), wherever the architecture puts it. */
function libfaketime(): string {
  const root = "/usr/lib";
  for (const dir of readdirSync(root)) {
    const lib = path.join(root, dir, "faketime", "libfaketimeMT.so.1");
    if (existsSync(lib)) return lib;
  }
  throw new Error("libfaketimeMT.so.1 not found under /usr/lib/*/faketime (Debian package faketime)");
}

const sha256 = (data: Buffer): string => `sha256:${createHash("sha256").update(data).digest("hex")}`;

/** Writes `body` at about `bytesPerSecond`, in ten pieces a second. */
function atRate(res: Parameters<typeof drip>[0], body: Buffer, bytesPerSecond: number): void {
  const piece = Math.ceil(bytesPerSecond / 10);
  drip(res, body, Math.ceil(body.length / piece), 100);
}

/**
 * Both take a minute by nature (a minimum rate judged over a minute; layers streaming for most of
 * one), so they run side by side, each with its own regcache.
 */
describe.skipIf(missing.length > 0)("time and shutdown", { concurrent: true }, () => {
  let env: TestEnvironment;
  let upstream: FakeUpstream;
  const steady = randomBytes(8_000_000);
  const layer = randomBytes(157_000_000);
  const slowClientLayer = randomBytes(40_000_000);
  const blobs = new Map([
    [sha256(steady), { body: steady, rate: 400_000 }],
    [sha256(layer), { body: layer, rate: 0 }],
    [sha256(slowClientLayer), { body: slowClientLayer, rate: 0 }],
  ]);
  const asked = (digest: string): boolean => upstream.requests.some((r) => r.url.endsWith(digest));
  const stalled = sha256(randomBytes(32));
  const url = (digest: string): string => `https://slow.test/v2/team/app/blobs/${digest}`;

  beforeAll(async () => {
    env = new TestEnvironment("time");
    upstream = new FakeUpstream(env.pki, (req, res) => {
      const digest = (req.url ?? "").split("/").pop() ?? "";
      if (digest === stalled) {
        // One byte a second, for ever: far below any sane minimum rate.
        res.writeHead(200, { "content-type": "application/octet-stream", "content-length": 100_000 });
        drip(res, Buffer.alloc(100_000), 100_000, 1_000);
        return;
      }
      const blob = blobs.get(digest);
      if (!blob) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": blob.body.length });
      if (blob.rate > 0) atRate(res, blob.body, blob.rate);
      else res.end(blob.body);
    });
    await upstream.start();
    // One CA before three processes start at once: each would otherwise create its own in the shared certs dir.
    await exec(process.execPath, [CLI, "ca", "init", "--certs-dir", env.path("certs")]);
  });
  afterAll(async () => {
    await upstream?.stop();
    await env?.cleanup();
  });

  it("wall-clock steps of +2 h and -2 h neither abort a 400 KB/s download nor spare a 1 B/s drip from the minimum rate", async () => {
    const clock = env.path("faketime");
    writeFileSync(clock, "+0\n");
    // Steps of the wall clock only, as NTP or an operator makes them: the monotonic clock runs on.
    const proxy = env.regcache("faketime", upstream.resolveArg("slow.test"), {
      env: { LD_PRELOAD: libfaketime(), FAKETIME_TIMESTAMP_FILE: clock, FAKETIME_NO_CACHE: "1", FAKETIME_DONT_FAKE_MONOTONIC: "1" },
    });
    await proxy.start();
    try {
      const download = curlThrough(proxy, url(sha256(steady)), [], 120_000);
      const drip = curlThrough(proxy, url(stalled), [], 150_000);
      await new Promise((r) => setTimeout(r, 5_000));
      writeFileSync(clock, "+2h\n");
      await new Promise((r) => setTimeout(r, 5_000));
      writeFileSync(clock, "-2h\n");
      const done: CurlResult = await download;
      expect(done.exitCode).toBe(0);
      expect(sha256(done.body)).toBe(sha256(steady));
      // Cut by regcache (curl 52 before any byte of the body, 18 after some), not by the test's own timeout.
      expect([18, 52]).toContain((await drip).exitCode);
      const aborted = await proxy.waitForLog((l) => l.msg === "download failed; nothing cached" && JSON.stringify(l).includes("below the minimum"));
      expect(JSON.stringify(aborted)).toContain("over 60 s");
      for (const line of proxy.requestLogs()) expect(line.durationMs as number).toBeGreaterThanOrEqual(0);
    } finally {
      await proxy.stop("SIGKILL");
    }
  });

  it("SIGTERM with 5 clients at 3 MB/s on a 157 MB layer, default settings: all complete, then it exits", async () => {
    // The harness starts regcache without a drain delay; this test wants the defaults, drain delay included.
    const proxy = env.regcache("shutdown", [...upstream.resolveArg("slow.test"), "--drain-delay", "5s"]);
    await proxy.start();
    const clients = Array.from({ length: 5 }, () => curlThrough(proxy, url(sha256(layer)), ["--limit-rate", "3M"], 180_000));
    await waitFor(() => asked(sha256(layer)), 10_000, "the layer to be asked for");
    await new Promise((r) => setTimeout(r, 3_000));
    const exited = proxy.stop();
    for (const res of await Promise.all(clients)) {
      expect(res.exitCode, JSON.stringify({ status: res.status, connect: res.connectStatus, bytes: res.body.length, logs: proxy.logs.filter((l) => l.level >= 40 || l.msg === "request" || l.msg.includes("shut")) })).toBe(0);
      expect(res.body.length).toBe(layer.length);
      expect(sha256(res.body)).toBe(sha256(layer));
    }
    expect(await exited).toBe(0);
    expect(proxy.logs.some((l) => l.msg === "in-flight requests finished")).toBe(true);
  });

  it("a client still streaming when --shutdown-grace runs out is cut, and the log names what was cut", async () => {
    const proxy = env.regcache("grace", [...upstream.resolveArg("slow.test"), "--shutdown-grace", "2s"]);
    await proxy.start();
    // 40 MB at 3 MB/s: streaming for 13 s, well past a 2 s grace.
    const slow = curlThrough(proxy, url(sha256(slowClientLayer)), ["--limit-rate", "3M"], 60_000);
    await waitFor(() => asked(sha256(slowClientLayer)), 10_000, "the layer to be asked for");
    expect(await proxy.stop()).toBe(0);
    const res = await slow;
    expect(res.exitCode).not.toBe(0);
    expect(res.body.length).toBeLessThan(slowClientLayer.length);
    const over = await proxy.waitForLog((l) => l.msg.startsWith("shutdown grace period over"));
    expect(over.requests).toBe(1);
    expect(JSON.stringify(over.cut)).toContain(sha256(slowClientLayer));
    const cutLine = await proxy.waitForLog((l) => l.msg === "request" && l.digest === sha256(slowClientLayer));
    expect(cutLine).toMatchObject({ cutAtShutdown: true, completed: false });
  });
});
