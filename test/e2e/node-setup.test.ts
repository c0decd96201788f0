import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI, RegcacheProcess, REPO_ROOT } from "./harness/regcache-process.js";
import { freePort } from "./harness/ports.js";
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

/** A fresh regcache CA in `dir`; returns its certificate file. */
async function createCa(dir: string): Promise<string> {
  await exec(process.execPath, [CLI, "ca", "init", "--certs-dir", dir]);
  return path.join(dir, "ca.crt");
}

/** A SHA-256 fingerprint in the form `regcache ca fingerprint` prints, that belongs to no CA here. */
const WRONG_FINGERPRINT = Array.from({ length: 32 }, (_, i) => (i * 7).toString(16).padStart(2, "0").toUpperCase()).join(":");

describe.skipIf(missing.length > 0)("deploy/node-setup.sh --root (run by POSIX dash)", () => {
  let dir: string;
  let ca: string;
  let fingerprint: string;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "node-setup-"));
    ca = await createCa(path.join(dir, "certs"));
    fingerprint = new X509Certificate(readFileSync(ca)).fingerprint256;
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

  it("--help prints the options, also when the script is piped to sh and has no file of its own", async () => {
    const piped = await exec("sh", ["-c", `cat ${SCRIPT} | sh -s -- --help`]);
    const direct = await setup(["--help"]);
    expect(direct.code).toBe(0);
    expect(piped.stdout).toBe(direct.stdout);
    for (const option of ["--mode", "--proxy", "--mirror", "--mirror-registries", "--ca", "--ca-sha256", "--ca-next", "--runtime", "--no-proxy", "--restart", "--uninstall", "--root", "--os"]) expect(piped.stdout).toContain(`  ${option} `);
  });

  it("refuses bad arguments with exit 2 and a message", async () => {
    expect((await setup(["--root", dir, "--os", "debian", "--runtime", "podman", "--proxy", "http://x:1", "--ca", ca])).code).toBe(2);
    expect((await setup(["--root", dir, "--os", "debian", "--proxy", "ftp://x", "--ca", ca])).stderr).toContain("--proxy must be");
    expect((await setup(["--root", dir, "--os", "debian", "--proxy", "http://x:1", "--ca", "/nonexistent"])).stderr).toContain("cannot read CA file");
    expect((await setup(["--bogus"])).code).toBe(2);
  });

  describe("--mode mirror", () => {
    const MIRROR = "https://10.96.0.50:5443";
    const mirrorArgs = (root: string, runtime: string, extra: string[] = []) => ["--root", root, "--os", "debian", "--mode", "mirror", "--runtime", runtime, "--mirror", MIRROR, "--ca", ca, ...extra];
    const systemWide = (root: string) => ["usr/local/share/ca-certificates/regcache.crt", "etc/systemd/system/containerd.service.d/http-proxy.conf"].map((f) => path.join(root, f));

    it("containerd: _default/hosts.toml with the mirror first and the CA beside it; nothing system-wide; idempotent; uninstall removes it", async () => {
      const root = path.join(dir, "mirror-containerd");
      const first = await setup(mirrorArgs(root, "containerd"));
      expect(first.code, first.stderr).toBe(0);
      const hostsToml = readFileSync(path.join(root, "etc/containerd/certs.d/_default/hosts.toml"), "utf8");
      expect(hostsToml).toMatch(/^# Written by regcache node-setup\.sh/);
      expect(hostsToml).toContain(`[host."${MIRROR}"]\n  capabilities = ["pull", "resolve"]\n  ca = "regcache-ca.crt"\n`);
      expect(readFileSync(path.join(root, "etc/containerd/certs.d/_default/regcache-ca.crt"), "utf8")).toBe(readFileSync(ca, "utf8"));
      // No config.toml here: the script says containerd needs config_path to read certs.d.
      expect(first.stderr).toContain("config_path");
      expect(first.stdout).toContain("containerd reads the mirror configuration on its next pull");
      for (const file of systemWide(root)) expect(existsSync(file), file).toBe(false);
      expect((await setup(mirrorArgs(root, "containerd"))).stdout).toContain("nothing changed");
      const removed = await setup(["--root", root, "--os", "debian", "--runtime", "containerd", "--uninstall"]);
      expect(removed.code, removed.stderr).toBe(0);
      expect(existsSync(path.join(root, "etc/containerd/certs.d/_default"))).toBe(false);
    });

    it("crio: a registries.conf.d drop-in whose mirror locations name each registry in their path (a port as _PORT), the CA in certs.d for the mirror; uninstall removes both", async () => {
      const root = path.join(dir, "mirror-crio");
      expect((await setup(mirrorArgs(root, "crio", ["--mirror-registries", "docker.io,registry.local:5000"]))).code).toBe(0);
      const conf = readFileSync(path.join(root, "etc/containers/registries.conf.d/50-regcache-mirror.conf"), "utf8");
      expect(conf).toContain('[[registry]]\nprefix = "docker.io"\nlocation = "docker.io"\n[[registry.mirror]]\nlocation = "10.96.0.50:5443/docker.io"\n');
      expect(conf).toContain('prefix = "registry.local:5000"\nlocation = "registry.local:5000"\n[[registry.mirror]]\nlocation = "10.96.0.50:5443/registry.local_5000"\n');
      expect(conf).not.toContain("insecure");
      const caFile = path.join(root, "etc/containers/certs.d/10.96.0.50:5443/regcache-ca.crt");
      expect(readFileSync(caFile, "utf8")).toBe(readFileSync(ca, "utf8"));
      expect((await setup(["--root", root, "--os", "debian", "--runtime", "crio", "--uninstall"])).code).toBe(0);
      expect(existsSync(caFile)).toBe(false);
      expect(existsSync(path.join(root, "etc/containers/registries.conf.d/50-regcache-mirror.conf"))).toBe(false);
    });

    it("docker: registry-mirrors merged into the operator's daemon.json as one piece, and taken out again leaving the file as it was", async () => {
      const root = path.join(dir, "mirror-docker");
      const daemonJson = path.join(root, "etc/docker/daemon.json");
      const original = '{\n  "live-restore": true,\n  "log-driver": "json-file"\n}\n';
      mkdirSync(path.dirname(daemonJson), { recursive: true });
      writeFileSync(daemonJson, original);
      expect((await setup(mirrorArgs(root, "docker"))).code).toBe(0);
      expect(JSON.parse(readFileSync(daemonJson, "utf8"))).toEqual({ "registry-mirrors": [MIRROR], "live-restore": true, "log-driver": "json-file" });
      expect((await setup(mirrorArgs(root, "docker"))).stdout).toContain("nothing changed");
      expect(readFileSync(path.join(root, "etc/docker/certs.d/10.96.0.50:5443/regcache-ca.crt"), "utf8")).toBe(readFileSync(ca, "utf8"));
      expect((await setup(["--root", root, "--os", "debian", "--runtime", "docker", "--uninstall"])).code).toBe(0);
      expect(readFileSync(daemonJson, "utf8")).toBe(original);
      // Without a daemon.json, the whole file is the script's, and goes with it.
      rmSync(daemonJson);
      expect((await setup(mirrorArgs(root, "docker"))).code).toBe(0);
      expect(JSON.parse(readFileSync(daemonJson, "utf8"))).toEqual({ "registry-mirrors": [MIRROR] });
      expect((await setup(["--root", root, "--os", "debian", "--runtime", "docker", "--uninstall"])).code).toBe(0);
      expect(existsSync(daemonJson)).toBe(false);
    });

    it("refuses to overwrite what it did not write: another hosts.toml, registries drop-in, or registry-mirrors", async () => {
      const root = path.join(dir, "mirror-foreign");
      const foreign: [string, string, string][] = [
        ["containerd", "etc/containerd/certs.d/_default/hosts.toml", 'server = "https://other"\n'],
        ["crio", "etc/containers/registries.conf.d/50-regcache-mirror.conf", "[[registry]]\n"],
        ["docker", "etc/docker/daemon.json", '{"registry-mirrors": ["https://other.example"]}\n'],
      ];
      for (const [runtime, file, content] of foreign) {
        mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
        writeFileSync(path.join(root, file), content);
        const run = await setup(mirrorArgs(root, runtime));
        expect(run.code, runtime).toBe(2);
        expect(run.stderr, runtime).toMatch(/was not written by node-setup\.sh|already lists registry-mirrors/);
        expect(readFileSync(path.join(root, file), "utf8")).toBe(content);
        // Uninstall leaves it alone too.
        expect((await setup(["--root", root, "--os", "debian", "--runtime", runtime, "--uninstall"])).code).toBe(0);
        expect(readFileSync(path.join(root, file), "utf8")).toBe(content);
      }
    });

    it("both: the proxy as before, the mirror's host in NO_PROXY (through the proxy its port is refused); a plain-HTTP mirror needs no CA", async () => {
      const root = path.join(dir, "mirror-both");
      const run = await setup(["--root", root, "--os", "debian", "--mode", "both", "--proxy", "http://10.96.0.50:3128", "--mirror", MIRROR, "--ca", ca, "--no-proxy", "localhost"]);
      expect(run.code, run.stderr).toBe(0);
      expect(readFileSync(path.join(root, "etc/systemd/system/containerd.service.d/http-proxy.conf"), "utf8")).toContain('Environment="NO_PROXY=localhost,10.96.0.50"');
      expect(existsSync(path.join(root, "usr/local/share/ca-certificates/regcache.crt"))).toBe(true);
      expect(readFileSync(path.join(root, "etc/containerd/certs.d/_default/hosts.toml"), "utf8")).toContain(`[host."${MIRROR}"]`);
      const plain = path.join(dir, "mirror-plain");
      expect((await setup(["--root", plain, "--mode", "mirror", "--runtime", "crio", "--mirror", "http://10.96.0.50:5000"])).code).toBe(0);
      expect(readFileSync(path.join(plain, "etc/containers/registries.conf.d/50-regcache-mirror.conf"), "utf8")).toContain('location = "10.96.0.50:5000/docker.io"\ninsecure = true');
      expect(existsSync(path.join(plain, "etc/containers/certs.d"))).toBe(false);
    });

    it("refuses a missing or malformed --mirror and an unknown mode", async () => {
      const root = path.join(dir, "mirror-bad");
      expect((await setup(["--root", root, "--mode", "mirror", "--ca", ca])).stderr).toBe("node-setup: --mirror is required with --mode mirror\n");
      expect((await setup(["--root", root, "--mode", "mirror", "--mirror", "regcache:5443", "--ca", ca])).stderr).toContain("--mirror must be an http:// or https:// URL");
      expect((await setup(["--root", root, "--mode", "mirror", "--mirror", "https://regcache:5443/v2/quay.io", "--ca", ca])).stderr).toContain("--mirror must be a URL without a path");
      expect((await setup(["--root", root, "--mode", "mirror", "--mirror", MIRROR])).stderr).toBe("node-setup: --ca is required\n");
      expect((await setup(["--root", root, "--mode", "sideways"])).code).toBe(2);
      expect(existsSync(root)).toBe(false);
    });
  });

  const pinned = (root: string, pin: string, caFile = ca): Promise<{ code: number; stdout: string; stderr: string }> =>
    setup(["--root", root, "--os", "debian", "--proxy", "http://10.96.0.50:3128", "--ca", caFile, "--ca-sha256", pin]);

  it("--ca-sha256 installs a CA whose fingerprint matches, written with colons or without, in either case", async () => {
    for (const [i, pin] of [fingerprint, fingerprint.replaceAll(":", "").toLowerCase()].entries()) {
      const root = path.join(dir, `pinned-${i}`);
      const run = await pinned(root, pin);
      expect(run.code, run.stderr).toBe(0);
      expect(readFileSync(path.join(root, "usr/local/share/ca-certificates/regcache.crt"), "utf8")).toBe(readFileSync(ca, "utf8"));
    }
  });

  it("--ca-sha256 refuses a CA with another fingerprint, and installs nothing", async () => {
    const root = path.join(dir, "wrong-pin");
    const run = await pinned(root, WRONG_FINGERPRINT.toLowerCase());
    expect(run.code).toBe(2);
    expect(run.stderr).toBe(`node-setup: ${ca} has SHA-256 fingerprint ${fingerprint}, expected ${WRONG_FINGERPRINT} (--ca-sha256): nothing installed\n`);
    expect(existsSync(root)).toBe(false);
  });

  it("--ca-sha256 refuses what is not a fingerprint, and a file with a second certificate beside the pinned one", async () => {
    const root = path.join(dir, "bad-pin");
    expect((await pinned(root, "AB:CD")).stderr).toBe("node-setup: --ca-sha256 must be 64 hex digits (colons optional), got AB:CD\n");
    expect((await pinned(root, `${fingerprint.slice(0, -2)}ZZ`)).stderr).toContain("--ca-sha256 must be a SHA-256 fingerprint in hex");
    const bundle = path.join(dir, "bundle.crt");
    writeFileSync(bundle, readFileSync(ca, "utf8") + readFileSync(await createCa(path.join(dir, "other-certs")), "utf8"));
    const run = await pinned(root, fingerprint, bundle);
    expect(run.code).toBe(2);
    expect(run.stderr).toBe(`node-setup: ${bundle} holds more than one certificate; --ca-sha256 pins exactly one\n`);
    expect(existsSync(root)).toBe(false);
  });
});

describe.skipIf(missing.length > 0)("rotating the CA with node-setup.sh --ca-next", () => {
  let dir: string;
  let proxy: RegcacheProcess | undefined;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), "ca-rotation-"));
  });
  afterAll(async () => {
    await proxy?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Whether a client that trusts exactly the CAs node setup installed under `root` accepts what regcache (with `certsDir`) presents. */
  async function nodeTrustsRegcache(root: string, certsDir: string): Promise<boolean> {
    const anchors = path.join(root, "usr/local/share/ca-certificates");
    const bundle = path.join(dir, "bundle.pem");
    writeFileSync(bundle, readdirSync(anchors).map((f) => readFileSync(path.join(anchors, f), "utf8")).join("\n"));
    proxy = new RegcacheProcess(path.join(dir, `data-${path.basename(certsDir)}`), certsDir);
    await proxy.start();
    try {
      // Nothing listens for quay.test: the TLS handshake with regcache's leaf is what is tested; the answer is regcache's own.
      const run = await exec("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--proxy", proxy.proxyUrl, "--cacert", bundle, "https://quay.test/v2/"]).catch((e: { code: number }) => e);
      return (run as { code?: number }).code === undefined;
    } finally {
      await proxy.stop();
      proxy = undefined;
    }
  }

  it("nodes trust the old and the new CA during the overlap, then the new one alone", async () => {
    const oldCa = await createCa(path.join(dir, "old"));
    const newCa = await createCa(path.join(dir, "new"));
    const root = path.join(dir, "node");
    const base = ["--root", root, "--os", "debian", "--proxy", "http://10.96.0.50:3128", "--restart"];
    const anchor = (name: string): string => path.join(root, "usr/local/share/ca-certificates", name);

    expect((await setup([...base, "--ca", oldCa])).code).toBe(0);
    expect(await nodeTrustsRegcache(root, path.join(dir, "new"))).toBe(false);

    // 1. Every node trusts the next CA beside the current one (the DaemonSet: Secret regcache-ca-next).
    const overlap = await setup([...base, "--ca", oldCa, "--ca-next", newCa]);
    expect(overlap.code, overlap.stderr).toBe(0);
    expect(readFileSync(anchor("regcache-next.crt"), "utf8")).toBe(readFileSync(newCa, "utf8"));
    expect(overlap.stdout).toContain("skipped (--root): update-ca-certificates");
    expect(overlap.stdout).toContain("skipped (--root): systemctl daemon-reload && systemctl restart containerd");
    expect((await setup([...base, "--ca", oldCa, "--ca-next", newCa])).stdout).toContain("nothing changed");
    // 2. regcache switches to the new CA: nodes in the overlap accept it, as they accepted the old one.
    expect(await nodeTrustsRegcache(root, path.join(dir, "old"))).toBe(true);
    expect(await nodeTrustsRegcache(root, path.join(dir, "new"))).toBe(true);

    // 3. The new CA becomes the current one and the next one goes (Secret regcache-ca replaced, regcache-ca-next deleted).
    const after = await setup([...base, "--ca", newCa]);
    expect(after.code, after.stderr).toBe(0);
    expect(after.stdout).toContain(`removed: ${anchor("regcache-next.crt")}`);
    expect(existsSync(anchor("regcache-next.crt"))).toBe(false);
    expect(readFileSync(anchor("regcache.crt"), "utf8")).toBe(readFileSync(newCa, "utf8"));
    expect(after.stdout).toContain("skipped (--root): systemctl daemon-reload && systemctl restart containerd");
    expect(await nodeTrustsRegcache(root, path.join(dir, "old"))).toBe(false);
    expect(await nodeTrustsRegcache(root, path.join(dir, "new"))).toBe(true);

    // Uninstall takes both CAs away.
    expect((await setup([...base, "--ca", oldCa, "--ca-next", newCa])).code).toBe(0);
    const gone = await setup(["--root", root, "--os", "debian", "--uninstall"]);
    expect(gone.code).toBe(0);
    expect(readdirSync(path.join(root, "usr/local/share/ca-certificates"))).toEqual([]);
  });

  it("a mirror node trusts regcache's mirror port under the old and the new CA during the overlap, then the new one alone", async () => {
    const oldCa = await createCa(path.join(dir, "mirror-old"));
    const newCa = await createCa(path.join(dir, "mirror-new"));
    const root = path.join(dir, "mirror-node");
    const port = await freePort();
    const base = ["--root", root, "--os", "debian", "--mode", "mirror", "--runtime", "containerd", "--mirror", `https://127.0.0.1:${port}`];
    const mirrorCa = path.join(root, "etc/containerd/certs.d/_default/regcache-ca.crt");
    /** Whether a client trusting the mirror's CA file accepts regcache's mirror port when regcache runs with `certsDir`. */
    const trusts = async (certsDir: string): Promise<boolean> => {
      proxy = new RegcacheProcess(path.join(dir, `data-${path.basename(certsDir)}`), certsDir, ["--mirror-listen", `127.0.0.1:${port}`, "--mirror-name", "127.0.0.1"]);
      await proxy.start();
      try {
        const run = await exec("curl", ["-s", "-o", "/dev/null", "--cacert", mirrorCa, `https://127.0.0.1:${port}/v2/`]).catch((e: { code: number }) => e);
        return (run as { code?: number }).code === undefined;
      } finally {
        await proxy.stop();
        proxy = undefined;
      }
    };

    const overlap = await setup([...base, "--ca", oldCa, "--ca-next", newCa]);
    expect(overlap.code, overlap.stderr).toBe(0);
    expect(readFileSync(mirrorCa, "utf8")).toBe(readFileSync(oldCa, "utf8") + readFileSync(newCa, "utf8"));
    // A mirror is trusted for its own address alone: nothing enters the system's trust store.
    expect(existsSync(path.join(root, "usr/local/share/ca-certificates"))).toBe(false);
    expect(await trusts(path.join(dir, "mirror-old"))).toBe(true);
    expect(await trusts(path.join(dir, "mirror-new"))).toBe(true);

    expect((await setup([...base, "--ca", newCa])).code).toBe(0);
    expect(await trusts(path.join(dir, "mirror-old"))).toBe(false);
    expect(await trusts(path.join(dir, "mirror-new"))).toBe(true);
  });

  it("a --ca-next that is not a certificate is refused before anything is installed", async () => {
    const ca = await createCa(path.join(dir, "only"));
    const notPem = path.join(dir, "hostname");
    writeFileSync(notPem, "node-7\n");
    const root = path.join(dir, "refused-next");
    const run = await setup(["--root", root, "--os", "debian", "--proxy", "http://10.96.0.50:3128", "--ca", ca, "--ca-next", notPem]);
    expect(run).toMatchObject({ code: 2, stderr: `node-setup: ${notPem} is not a PEM certificate\n` });
    expect(existsSync(root)).toBe(false);
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

  it("serves the script with this proxy's URL, CA and CA fingerprint pre-filled; piped to sh it installs the real CA", async () => {
    const script = (await exec("curl", ["-sf", `${proxy.proxyUrl}/setup/node.sh`])).stdout;
    expect(script).toContain(`DEFAULT_PROXY='${proxy.proxyUrl}'`);
    expect(script).toContain(`DEFAULT_CA_SHA256='${new X509Certificate(readFileSync(proxy.caFile)).fingerprint256}'`);
    const root = path.join(dir, "root");
    const { stdout } = await exec("sh", ["-c", `curl -sf ${proxy.proxyUrl}/setup/node.sh | sh -s -- --root ${root} --os debian`]);
    expect(stdout).toContain("wrote:");
    expect(readFileSync(path.join(root, "usr/local/share/ca-certificates/regcache.crt"), "utf8").trim()).toBe(readFileSync(proxy.caFile, "utf8").trim());
    expect(readFileSync(path.join(root, "etc/systemd/system/containerd.service.d/http-proxy.conf"), "utf8")).toContain(`HTTPS_PROXY=${proxy.proxyUrl}`);
  });

  it("the pre-filled fingerprint refuses another CA, as an explicit --ca-sha256 refuses this one", async () => {
    const other = await createCa(path.join(dir, "other-certs"));
    for (const args of [`--ca ${other}`, `--ca-sha256 ${WRONG_FINGERPRINT}`]) {
      const root = path.join(dir, "refused");
      const run = await exec("sh", ["-c", `curl -sf ${proxy.proxyUrl}/setup/node.sh | sh -s -- --root ${root} --os debian ${args}`]).catch((e: { code: number; stderr: string }) => e);
      expect((run as { code?: number }).code, args).toBe(2);
      expect(run.stderr, args).toMatch(/^node-setup: \S+ca\.crt has SHA-256 fingerprint [0-9A-F:]{95}, expected [0-9A-F:]{95} \(--ca-sha256\): nothing installed\n$/);
      expect(existsSync(root), args).toBe(false);
    }
  });

  it("ignores a Host header that is not a plain authority", async () => {
    const script = (await exec("curl", ["-sf", "-H", "Host: x';rm -rf /;'", `${proxy.proxyUrl}/setup/node.sh`])).stdout;
    expect(script).not.toContain("rm -rf");
    expect(script).toContain(`DEFAULT_PROXY='http://127.0.0.1:${proxy.port}'`);
  });
});
