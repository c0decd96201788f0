import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { curlThrough, skopeoPull, TestContainerd, type SkopeoResult } from "./harness/clients.js";
import { TestEnvironment, type PushedImage } from "./harness/environment.js";
import { TestHaproxy } from "./harness/haproxy.js";
import { waitFor } from "./harness/ports.js";
import { CLI, type RegcacheProcess } from "./harness/regcache-process.js";
import { containerdUnavailable, missingTools } from "./harness/tools.js";

const exec = promisify(execFile);
const missing = missingTools("docker-registry", "skopeo", "openssl", "curl", "haproxy");

/** Kubelet retries a failed pull; so does this, a few times, as containerd's clients do. */
async function withRetries(attempt: () => Promise<SkopeoResult>, tries = 4): Promise<SkopeoResult> {
  let last: SkopeoResult = { ok: false, stdout: "", stderr: "not tried", durationMs: 0 };
  for (let i = 0; i < tries; i++) {
    last = await attempt();
    if (last.ok) return last;
    await new Promise((r) => setTimeout(r, 500));
  }
  return last;
}

async function metricValue(proxyUrl: string, name: string): Promise<number> {
  const { stdout } = await exec("curl", ["-sf", `${proxyUrl}/metrics`]);
  const line = stdout.split("\n").find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(" ")[1]) : Number.NaN;
}

describe.skipIf(missing.length > 0)("replicas behind haproxy (standing in for a Kubernetes Service)", () => {
  let env: TestEnvironment;
  let replicas: RegcacheProcess[];
  let haproxy: TestHaproxy;
  let small: PushedImage;
  let large: PushedImage;
  let caHash: string;
  let caMtime: number;

  beforeAll(async () => {
    env = new TestEnvironment("replicas");
    await env.start();
    small = await env.pushImage("team/svc", "1", [400_000, 200_000], 2);
    large = await env.pushImage("team/big", "1", [60_000_000]);
    const certs = env.path("certs");
    await exec(process.execPath, [CLI, "ca", "init", "--certs-dir", certs]);
    chmodSync(path.join(certs, "ca.key"), 0o400);
    chmodSync(path.join(certs, "ca.crt"), 0o444);
    chmodSync(certs, 0o555);
    caHash = createHash("sha256").update(readFileSync(path.join(certs, "ca.key"))).update(readFileSync(path.join(certs, "ca.crt"))).digest("hex");
    caMtime = statSync(path.join(certs, "ca.key")).mtimeMs;
    replicas = [0, 1, 2].map((i) => env.regcache(`replica-${i}`, ["--drain-delay", "1s", "--shutdown-grace", "25s"]));
    await Promise.all(replicas.map((r) => r.start()));
    haproxy = new TestHaproxy(env.dir, replicas.map((r) => r.port));
    await haproxy.start();
  });
  afterAll(async () => {
    await haproxy?.stop();
    chmodSync(env.path("certs"), 0o755);
    await env?.cleanup();
  });

  const front = () => ({ proxyUrl: haproxy.proxyUrl, caFile: path.join(env.path("certs"), "ca.crt") });

  it("every replica serves the one shared CA, read-only, and none rewrites it", async () => {
    for (const r of replicas) {
      expect((await exec("curl", ["-sf", `${r.proxyUrl}/ca.crt`])).stdout).toBe(readFileSync(front().caFile, "utf8"));
    }
    const hash = createHash("sha256").update(readFileSync(path.join(env.path("certs"), "ca.key"))).update(readFileSync(front().caFile)).digest("hex");
    expect(hash).toBe(caHash);
    expect(statSync(path.join(env.path("certs"), "ca.key")).mtimeMs).toBe(caMtime);
  });

  it("kill -9 of one replica during a loop of skopeo and ctr pulls: every pull succeeds", async () => {
    const containerd = containerdUnavailable() ? undefined : new TestContainerd(env.path("containerd"));
    await containerd?.start();
    try {
      const results: SkopeoResult[] = [];
      let killed = false;
      for (let i = 0; i < 8; i++) {
        // The kill lands while a pull is in flight, on whichever connection it hits.
        if (i === 3) setTimeout(() => void replicas[0]!.stop("SIGKILL").then(() => (killed = true)), 150);
        results.push(await withRetries(() => skopeoPull(front(), small.ref, env.path(`loop-${i}`), { all: true })));
        if (containerd) results.push(await withRetries(() => containerd.pull(front(), small.ref, { allPlatforms: true })));
      }
      expect(killed).toBe(true);
      for (const r of results) expect(r.ok, r.stderr).toBe(true);
      if (containerd) expect((await containerd.verifyContent()).corrupt).toEqual([]);
    } finally {
      await containerd?.stop();
    }
  });

  it("SIGTERM of the replica serving a large pull: that pull completes, then the replica exits 0", async () => {
    const layer = large.layerDigests[0]!;
    const pull = curlThrough(front(), `https://quay.test/v2/team/big/blobs/${layer}`, ["--limit-rate", "15M"], 120_000);
    let serving: RegcacheProcess | undefined;
    await waitFor(
      async () => {
        for (const r of replicas.slice(1)) {
          if ((await metricValue(r.proxyUrl, "regcache_active_requests")) > 0) serving = r;
        }
        return serving !== undefined;
      },
      10_000,
      "a replica to serve the pull",
    );
    const exitCode = serving!.stop("SIGTERM");
    await waitFor(async () => (await exec("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", `${serving!.proxyUrl}/readyz`]).catch(() => ({ stdout: "000" }))).stdout !== "200", 5_000, "readiness to turn off");
    const result = await pull;
    expect(result.exitCode).toBe(0);
    expect(result.status).toBe(200);
    expect(`sha256:${createHash("sha256").update(result.body).digest("hex")}`).toBe(layer);
    expect(await exitCode).toBe(0);
    expect(serving!.logs.some((l) => l.msg === "in-flight requests finished")).toBe(true);
    const after = await withRetries(() => skopeoPull(front(), small.ref, env.path("after-term")));
    expect(after.ok, after.stderr).toBe(true);
  });
});
