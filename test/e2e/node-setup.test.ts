import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RegcacheProcess, REPO_ROOT } from "./harness/regcache-process.js";
import { missingTools } from "./harness/tools.js";

const exec = promisify(execFile);
const SCRIPT = path.join(REPO_ROOT, "deploy/node-setup.sh");
const missing = missingTools("dash", "curl");

async function setup(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec("dash", [SCRIPT, ...args]);
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe.skipIf(missing.length > 0)("deploy/node-setup.sh --root (run by POSIX dash)", () => {
  let dir: string;
  let ca: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), "node-setup-"));
    ca = path.join(dir, "ca.crt");
    writeFileSync(ca, "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n");
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  for (const [runtime, os, anchor] of [
    ["containerd", "debian", "usr/local/share/ca-certificates/regcache.crt"],
    ["docker", "debian", "usr/local/share/ca-certificates/regcache.crt"],
    ["crio", "rhel", "etc/pki/ca-trust/source/anchors/regcache.crt"],
  ] as const) {
    it(`${runtime} on ${os}: writes the CA and the drop-in, is idempotent, and uninstalls`, async () => {
      const root = path.join(dir, `${runtime}-${os}`);
      const args = ["--root", root, "--os", os, "--runtime", runtime, "--proxy", "http://10.96.0.50:3128", "--ca", ca, "--no-proxy", "localhost,.svc"];
      const first = await setup(args);
      expect(first.code, first.stderr).toBe(0);
      expect(readFileSync(path.join(root, anchor), "utf8")).toBe(readFileSync(ca, "utf8"));
      const dropin = path.join(root, `etc/systemd/system/${runtime}.service.d/http-proxy.conf`);
      const text = readFileSync(dropin, "utf8");
      expect(text).toContain("[Service]");
      expect(text).toContain('Environment="HTTPS_PROXY=http://10.96.0.50:3128"');
      expect(text).toContain('Environment="NO_PROXY=localhost,.svc"');
      expect(first.stdout).toContain(`skipped (--root): ${os === "debian" ? "update-ca-certificates" : "update-ca-trust extract"}`);
      expect(first.stdout).toContain(`restart ${runtime} to apply`);
      const second = await setup(args);
      expect(second.code).toBe(0);
      expect(second.stdout).toContain("nothing changed");
      expect(second.stdout).not.toContain("wrote:");
      expect(readFileSync(dropin, "utf8")).toBe(text);
      const restart = await setup([...args.slice(0, 4), "--uninstall", "--runtime", runtime, "--restart"]);
      expect(restart.code).toBe(0);
      expect(existsSync(dropin)).toBe(false);
      expect(existsSync(path.join(root, anchor))).toBe(false);
      expect(restart.stdout).toContain(`skipped (--root): systemctl daemon-reload && systemctl restart ${runtime}`);
    });
  }

  it("refuses bad arguments with exit 2 and a message", async () => {
    expect((await setup(["--root", dir, "--os", "debian", "--runtime", "podman", "--proxy", "http://x:1", "--ca", ca])).code).toBe(2);
    expect((await setup(["--root", dir, "--os", "debian", "--proxy", "ftp://x", "--ca", ca])).stderr).toContain("--proxy must be");
    expect((await setup(["--root", dir, "--os", "debian", "--proxy", "http://x:1", "--ca", "/nonexistent"])).stderr).toContain("cannot read CA file");
    expect((await setup(["--bogus"])).code).toBe(2);
  });
});

describe.skipIf(missing.length > 0)("GET /setup/node.sh", () => {
  let dir: string;
  let proxy: RegcacheProcess;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "setup-endpoint-"));
    proxy = new RegcacheProcess(path.join(dir, "data"), path.join(dir, "certs"));
    await proxy.start();
  });
  afterAll(async () => {
    await proxy?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("serves the script with this proxy's URL and CA pre-filled; piped to sh it installs the real CA", async () => {
    const script = (await exec("curl", ["-sf", `${proxy.proxyUrl}/setup/node.sh`])).stdout;
    expect(script).toContain(`DEFAULT_PROXY='${proxy.proxyUrl}'`);
    const root = path.join(dir, "root");
    const { stdout } = await exec("sh", ["-c", `curl -sf ${proxy.proxyUrl}/setup/node.sh | sh -s -- --root ${root} --os debian`]);
    expect(stdout).toContain("wrote:");
    expect(readFileSync(path.join(root, "usr/local/share/ca-certificates/regcache.crt"), "utf8").trim()).toBe(readFileSync(proxy.caFile, "utf8").trim());
    expect(readFileSync(path.join(root, "etc/systemd/system/containerd.service.d/http-proxy.conf"), "utf8")).toContain(`HTTPS_PROXY=${proxy.proxyUrl}`);
  });

  it("ignores a Host header that is not a plain authority", async () => {
    const script = (await exec("curl", ["-sf", "-H", "Host: x';rm -rf /;'", `${proxy.proxyUrl}/setup/node.sh`])).stdout;
    expect(script).not.toContain("rm -rf");
    expect(script).toContain(`DEFAULT_PROXY='http://127.0.0.1:${proxy.port}'`);
  });
});
