import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { corruptBlobsInLayout, layoutDigests, skopeoPull, TestContainerd } from "./harness/clients.js";
import { TestEnvironment, type PushedImage } from "./harness/environment.js";
import type { RegcacheProcess } from "./harness/regcache-process.js";
import { containerdUnavailable, missingTools } from "./harness/tools.js";

const exec = promisify(execFile);
const missing = missingTools("docker-registry", "skopeo", "openssl", "curl");

describe.skipIf(missing.length > 0)("foundation: CONNECT, CA, leaves, pass-through with real clients", () => {
  let env: TestEnvironment;
  let proxy: RegcacheProcess;
  let image: PushedImage;

  beforeAll(async () => {
    env = new TestEnvironment("foundation");
    await env.start();
    image = await env.pushImage("library/multi", "v1", [200_000, 50_000], 2);
    proxy = env.regcache();
    await proxy.start();
  });
  afterAll(async () => env?.cleanup());

  it("creates the CA with a 0600 key and serves it at /ca.crt", async () => {
    expect(statSync(`${proxy.certsDir}/ca.key`).mode & 0o777).toBe(0o600);
    const { stdout } = await exec("curl", ["-sf", `${proxy.proxyUrl}/ca.crt`]);
    expect(stdout).toBe(readFileSync(proxy.caFile, "utf8"));
    const ca = new X509Certificate(stdout);
    expect(ca.ca).toBe(true);
  });

  it("mints a leaf for the CONNECT host that chains to the CA through a per-process ECDSA issuer (openssl s_client)", async () => {
    const { stdout } = await exec("sh", ["-c", `echo | openssl s_client -proxy 127.0.0.1:${proxy.port} -connect quay.test:443 -servername quay.test -CAfile ${proxy.caFile} -showcerts 2>/dev/null`]);
    expect(stdout).toContain("Verify return code: 0 (ok)");
    const [leaf, issuer, ...rest] = [...stdout.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map((m) => new X509Certificate(m[0]));
    expect(rest).toEqual([]);
    expect(leaf!.subjectAltName).toBe("DNS:quay.test");
    expect(leaf!.publicKey.asymmetricKeyType).toBe("ec");
    expect(leaf!.checkIssued(issuer!)).toBe(true);
    expect(issuer!.checkIssued(new X509Certificate(readFileSync(proxy.caFile)))).toBe(true);
    expect(Number.parseInt(leaf!.serialNumber.slice(0, 1), 16) & 0x8).toBe(0);
    // The issuer exists in memory only: nothing but the root's two files is in the certs dir.
    expect(readdirSync(proxy.certsDir).sort()).toEqual(["ca.crt", "ca.key"]);
  });

  it("skopeo pulls a two-platform image through regcache with every digest intact", async () => {
    const dest = env.path("pull-skopeo");
    const result = await skopeoPull(proxy, image.ref, dest, { all: true });
    expect(result.stderr).not.toMatch(/error/i);
    expect(result.ok).toBe(true);
    const { checked, corrupt } = corruptBlobsInLayout(dest);
    expect(corrupt).toEqual([]);
    expect(checked).toBe(image.allDigests.length);
    expect(layoutDigests(dest).sort()).toEqual([...image.allDigests].sort());
  });

  it("logs one JSON line per request with host, repository, digest, cache status and status", async () => {
    await proxy.waitForLog((l) => l.msg === "request" && l.kind === "blob");
    const lines = proxy.requestLogs().filter((l) => l.kind === "blob");
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) {
      expect(line.host).toBe("quay.test");
      expect(line.repository).toBe("library/multi");
      expect(typeof line.digest).toBe("string");
      expect(["HIT", "MISS", "COALESCED"]).toContain(line.cache);
      expect(line.status).toBe(200);
      expect(typeof line.durationMs).toBe("number");
    }
  });

  it("refuses CONNECT to ports that are not allowed, with 403", async () => {
    const { stdout } = await exec("curl", ["-s", "-o", "/dev/null", "-w", "%{http_connect}", "-x", proxy.proxyUrl, "https://quay.test:8443/v2/"]).catch((e: { stdout: string }) => ({ stdout: e.stdout }));
    expect(stdout).toBe("403");
  });

  it("refuses a Host header that differs from the CONNECT target", async () => {
    const { stdout } = await exec("curl", ["-s", "-w", "\n%{http_code}", "--cacert", proxy.caFile, "-x", proxy.proxyUrl, "-H", "Host: evil.test", "https://quay.test/v2/"]);
    expect(stdout.trim().split("\n").pop()).toBe("421");
  });

  describe.skipIf(containerdUnavailable())("containerd", () => {
    let containerd: TestContainerd;
    beforeAll(async () => {
      containerd = new TestContainerd(env.path("containerd"));
      await containerd.start();
    });
    afterAll(async () => containerd?.stop());

    it("ctr pulls the two-platform image through regcache, content verified", async () => {
      const result = await containerd.pull(proxy, image.ref, { allPlatforms: true });
      expect(result.ok, result.stderr).toBe(true);
      const { checked, corrupt } = await containerd.verifyContent();
      expect(corrupt).toEqual([]);
      expect((await containerd.contentDigests()).sort()).toEqual([...image.allDigests].sort());
      expect(checked).toBe(image.allDigests.length);
    });
  });
});

describe.skipIf(missing.length > 0)("foundation: upstream TLS is always verified", () => {
  let env: TestEnvironment;
  let proxy: RegcacheProcess;
  let image: PushedImage;

  beforeAll(async () => {
    env = new TestEnvironment("untrusted");
    await env.start();
    image = await env.pushImage("library/small", "v1", [10_000]);
    proxy = env.regcache("untrusted", [], { upstreamCa: false });
    await proxy.start();
  });
  afterAll(async () => env?.cleanup());

  it("answers 502 with a registry JSON error when the upstream certificate cannot be verified", async () => {
    const { stdout } = await exec("curl", ["-s", "-w", "\n%{http_code}", "--cacert", proxy.caFile, "-x", proxy.proxyUrl, `https://quay.test/v2/library/small/manifests/${image.topDigest}`]);
    const [body, status] = stdout.trim().split("\n");
    expect(status).toBe("502");
    const parsed = JSON.parse(body!) as { errors: { code: string; message: string }[] };
    expect(parsed.errors[0]!.code).toBe("UNAVAILABLE");
    expect(parsed.errors[0]!.message).toMatch(/TLS verification failed/);
  });

  it("never serves the image: skopeo fails", async () => {
    const result = await skopeoPull(proxy, image.ref, env.path("pull-untrusted"));
    expect(result.ok).toBe(false);
  });
});
