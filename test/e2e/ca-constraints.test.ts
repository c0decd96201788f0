import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { curlThrough, skopeoPull } from "./harness/clients.js";
import { TestEnvironment, type PushedImage } from "./harness/environment.js";
import { CLI, type RegcacheProcess } from "./harness/regcache-process.js";
import { missingTools } from "./harness/tools.js";

const exec = promisify(execFile);
const missing = missingTools("docker-registry", "skopeo", "openssl", "curl");

describe.skipIf(missing.length > 0)("a CA with name constraints", () => {
  let env: TestEnvironment;
  let proxy: RegcacheProcess;
  let image: PushedImage;

  beforeAll(async () => {
    env = new TestEnvironment("constraints");
    await env.start();
    image = await env.pushImage("team/app", "1", [50_000]);
    await exec(process.execPath, [CLI, "ca", "init", "--certs-dir", env.path("certs"), "--name-constraint", "quay.test"]);
    proxy = env.regcache("constrained", ["--resolve", `open.test:443=127.0.0.1:${env.registry.port}`]);
    await proxy.start();
  });
  afterAll(async () => env?.cleanup());

  it("carries a critical Name Constraints extension that OpenSSL reads", async () => {
    const { stdout } = await exec("openssl", ["x509", "-in", proxy.caFile, "-noout", "-text"]);
    expect(stdout).toMatch(/X509v3 Name Constraints: critical\s+Permitted:\s+DNS:quay.test/);
  });

  it("intercepts permitted hosts: Go (skopeo) and OpenSSL accept the chain", async () => {
    expect((await skopeoPull(proxy, image.ref, env.path("pull"))).ok).toBe(true);
    const { stdout } = await exec("sh", ["-c", `echo | openssl s_client -proxy 127.0.0.1:${proxy.port} -connect quay.test:443 -servername quay.test -CAfile ${proxy.caFile} 2>/dev/null`]);
    expect(stdout).toContain("Verify return code: 0 (ok)");
  });

  it("never mints for other hosts: they are tunnelled with the upstream's own certificate", async () => {
    const { stdout } = await exec("sh", ["-c", `echo | openssl s_client -proxy 127.0.0.1:${proxy.port} -connect open.test:443 -servername open.test 2>/dev/null | openssl x509 -noout -issuer`]);
    expect(stdout).toContain("regcache test upstream CA");
    const viaTunnel = await curlThrough({ proxyUrl: proxy.proxyUrl, caFile: env.pki.caCert }, "https://open.test/v2/");
    expect(viaTunnel.status).toBe(200);
    expect(viaTunnel.headers["x-cache"]).toBeUndefined();
    // Uncached by choice, but not silent: an info line and a row on the stats page.
    const line = await proxy.waitForLog((l) => l.msg === "CONNECT tunnelled" && l.host === "open.test");
    expect(line.level).toBe(30);
    const stats = (await (await fetch(`${proxy.proxyUrl}/api/stats`)).json()) as { notIntercepted: { host: string; tunnelled: number }[] };
    expect(stats.notIntercepted.find((c) => c.host === "open.test")?.tunnelled).toBeGreaterThanOrEqual(2);
  });

  it("--unpermitted-hosts deny refuses them instead", async () => {
    const strict = env.regcache("strict", ["--unpermitted-hosts", "deny"]);
    await strict.start();
    const res = await curlThrough(strict, "https://open.test/v2/");
    expect(res.connectStatus).toBe(403);
    expect((await strict.waitForLog((l) => l.msg === "CONNECT refused")).level).toBe(30);
    const stats = (await (await fetch(`${strict.proxyUrl}/api/stats`)).json()) as { notIntercepted: { host: string; denied: number }[] };
    expect(stats.notIntercepted.find((c) => c.host === "open.test")?.denied).toBe(1);
    await strict.stop();
  });
});
