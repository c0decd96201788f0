import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HungMount, hungMountUnavailable } from "./harness/hung-mount.js";
import { freePort } from "./harness/ports.js";
import { CLI, RegcacheProcess, REPO_ROOT } from "./harness/regcache-process.js";
import { mountTmpfs, tmpfsUnavailable, unmountTmpfs } from "./harness/tmpfs.js";
import { missingTools, OLD_NODE } from "./harness/tools.js";

const exec = promisify(execFile);
const VERSION = (JSON.parse(readFileSync(path.join(REPO_ROOT, "package.json"), "utf8")) as { version: string }).version;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI to its end; a failure is a result to assert on, not a thrown error. */
function regcache(args: string[], options: { env?: Record<string, string>; node?: string } = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(options.node ?? process.execPath, [CLI, ...args], { env: { ...process.env, ...options.env }, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === "number" ? err.code : null) : 0, stdout, stderr });
    });
  });
}

/** Asserts the one line a failed command prints, its exit code, and that it wrote nothing else. */
function expectFailure(run: Run, code: number, line: string): void {
  expect(run.stderr).toBe(`${line}\n`);
  expect(run.code, run.stderr).toBe(code);
}

describe("the README's first command", () => {
  it("`npx regcache` runs this checkout's CLI after npm ci, without fetching anything", async () => {
    const { stdout } = await exec("npx", ["--no-install", "regcache", "--help"], { cwd: REPO_ROOT, timeout: 60_000 });
    expect(stdout).toContain("Usage: regcache");
    for (const command of ["serve", "ca", "prefetch", "stats"]) expect(stdout).toContain(command);
  });

  it("reports a bad option with a clear message and exit code 2", async () => {
    const failure = await exec("npx", ["--no-install", "regcache", "serve", "--listen", "nowhere"], { cwd: REPO_ROOT, timeout: 60_000 }).catch((e: { code: number; stderr: string }) => e);
    expect((failure as { code: number }).code).toBe(2);
    expect((failure as { stderr: string }).stderr).toContain("regcache: --listen must be HOST:PORT");
  });
});

describe("the npm package", () => {
  it("ships the compiled CLI, node setup and the docs the README links to, and no source map pointing at sources it lacks", async () => {
    // --ignore-scripts: the suite runs on the dist/ that `npm test` built; pack would build it again.
    const { stdout } = await exec("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: REPO_ROOT, timeout: 60_000 });
    const files = (JSON.parse(stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
    expect(files).toEqual(expect.arrayContaining(["dist/cli/main.js", "deploy/node-setup.sh", "README.md", "docs/troubleshooting.md", "LICENSE", "SECURITY.md", "package.json"]));
    expect(files.filter((f) => f.endsWith(".map"))).toEqual([]);
    const dangling = files
      .filter((f) => f.endsWith(".js"))
      .flatMap((f) => [...readFileSync(path.join(REPO_ROOT, f), "utf8").matchAll(/sourceMappingURL=(\S+)/g)].map((m) => `${f} -> ${m[1]}`))
      .filter((link) => !files.includes(path.join(path.dirname(link.split(" -> ")[0]!), link.split(" -> ")[1]!)));
    expect(dangling).toEqual([]);
    const readmeLinks = [...readFileSync(path.join(REPO_ROOT, "README.md"), "utf8").matchAll(/\]\(((?:docs\/)?[\w.-]+\.md)(?:#[^)]*)?\)/g)].map((m) => m[1]!);
    expect(readmeLinks.filter((link) => !files.includes(link))).toEqual([]);
  });
});

describe("CLI errors: one line on stderr; 2 for the command line, 1 for running", () => {
  let dir: string;
  let certsDir: string;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "cli-"));
    certsDir = path.join(dir, "certs");
    expect((await regcache(["ca", "init", "--certs-dir", certsDir])).code).toBe(0);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("--version prints the version", async () => {
    expect(await regcache(["--version"])).toEqual({ code: 0, stdout: `${VERSION}\n`, stderr: "" });
  });

  it("usage errors exit 2: an unknown option, an invalid choice, a size without a unit, a --proxy without a scheme", async () => {
    expectFailure(await regcache(["serve", "--bogus"]), 2, "regcache: unknown option '--bogus' (see regcache serve --help)");
    expectFailure(await regcache(["frobnicate"]), 2, "regcache: unknown command 'frobnicate' (see regcache --help)");
    expectFailure(
      await regcache(["serve", "--log-level", "loud"]),
      2,
      "regcache: option '--log-level <level>' argument 'loud' is invalid. Allowed choices are fatal, error, warn, info, debug, trace, silent. (see regcache serve --help)",
    );
    expectFailure(await regcache(["serve", "--max-cache-size", "20"]), 2, "regcache: --max-cache-size needs a unit, e.g. 20GiB (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB, Ki, Mi, Gi, Ti)");
    expectFailure(
      await regcache(["serve"], { env: { REGCACHE_MAX_CACHE_SIZE: "20G" } }),
      2,
      "regcache: --max-cache-size \"20G\" is ambiguous: write 20GiB for 20 × 1024^3 bytes (Kubernetes' 20Gi) or 20GB for 20 × 1000^3",
    );
    expectFailure(await regcache(["stats", "--proxy", "127.0.0.1:3128"]), 2, 'regcache: --proxy must be a URL such as http://127.0.0.1:3128, got "127.0.0.1:3128"');
    expectFailure(await regcache(["prefetch", "nginx:1"], { env: { REGCACHE_PROXY: "localhost:3128" } }), 2, 'regcache: --proxy must be a URL such as http://127.0.0.1:3128, got "localhost:3128"');
  });

  it("cannot listen on a port in use", async () => {
    const holder: Server = createServer();
    await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
    const port = (holder.address() as { port: number }).port;
    try {
      const run = await regcache(["serve", "--listen", `127.0.0.1:${port}`, "--data-dir", path.join(dir, "data"), "--certs-dir", certsDir, "--log-level", "warn"]);
      expectFailure(run, 1, `regcache: cannot listen on 127.0.0.1:${port}: address already in use`);
    } finally {
      holder.close();
    }
  });

  it("stats and prefetch aimed at a port where nothing listens", async () => {
    const proxy = `http://127.0.0.1:${await freePort()}`;
    const unreachable = `regcache: cannot reach regcache at ${proxy}: connection refused`;
    expectFailure(await regcache(["stats", "--proxy", proxy]), 1, unreachable);
    expectFailure(await regcache(["prefetch", "--proxy", proxy, "nginx:1"]), 1, unreachable);
    // With --ca nothing needs the proxy before the first pull: the run still fails at once, not per image.
    expectFailure(await regcache(["prefetch", "--proxy", proxy, "--ca", path.join(certsDir, "ca.crt"), "nginx:1", "redis:7"]), 1, unreachable);
  });

  it("an --upstream-ca that holds no certificate is refused at start, naming the file", async () => {
    const notPem = path.join(dir, "hostname");
    writeFileSync(notPem, "build-host-7\n");
    const run = await regcache(["serve", "--listen", "127.0.0.1:0", "--data-dir", path.join(dir, "data"), "--certs-dir", certsDir, "--upstream-ca", notPem]);
    expectFailure(run, 1, `regcache: --upstream-ca ${notPem} holds no PEM certificate (a "-----BEGIN CERTIFICATE-----" block)`);
  });

  it("prefetch --file that does not exist", async () => {
    const missing = path.join(dir, "images.txt");
    expectFailure(await regcache(["prefetch", "--file", missing]), 1, `regcache: cannot read --file ${missing}: no such file or directory`);
  });

  it("--debug, --log-level debug and REGCACHE_LOG_LEVEL=debug add the stack", async () => {
    const proxy = `http://127.0.0.1:${await freePort()}`;
    for (const run of [
      await regcache(["--debug", "stats", "--proxy", proxy]),
      await regcache(["stats", "--proxy", proxy], { env: { REGCACHE_LOG_LEVEL: "debug" } }),
      await regcache(["serve", "--log-level", "debug", "--max-cache-size", "20", "--data-dir", path.join(dir, "data"), "--certs-dir", certsDir]),
    ]) {
      expect(run.stderr).toMatch(/^regcache: .*\n/);
      expect(run.stderr).toContain("\n    at ");
    }
  });

  it("`ca cert` and `ca fingerprint` with a mistyped --certs-dir fail and create nothing", async () => {
    const typo = path.join(dir, "cetrs");
    const line = `regcache: no CA in ${typo} (no ca.crt): pass the --certs-dir that serve uses, or create a CA with: regcache ca init --certs-dir ${typo}`;
    expectFailure(await regcache(["ca", "cert", "--certs-dir", typo]), 1, line);
    expectFailure(await regcache(["ca", "fingerprint", "--certs-dir", typo]), 1, line);
    expect(existsSync(typo)).toBe(false);
  });

  it("`ca cert` prints the CA, `ca fingerprint` its SHA-256 fingerprint as openssl shows it", async () => {
    const pem = readFileSync(path.join(certsDir, "ca.crt"), "utf8");
    expect(await regcache(["ca", "cert", "--certs-dir", certsDir])).toEqual({ code: 0, stdout: pem, stderr: "" });
    const fingerprint = await regcache(["ca", "fingerprint", "--certs-dir", certsDir]);
    expect(fingerprint.code).toBe(0);
    expect(fingerprint.stdout).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}\n$/);
    expect(fingerprint.stdout.trim()).toBe(new X509Certificate(pem).fingerprint256);
    if (missingTools("openssl").length === 0) {
      const openssl = await exec("openssl", ["x509", "-in", path.join(certsDir, "ca.crt"), "-noout", "-fingerprint", "-sha256"]);
      expect(openssl.stdout.trim().replace(/^sha256 Fingerprint=/i, "")).toBe(fingerprint.stdout.trim());
    }
  });

  describe.skipIf(tmpfsUnavailable())("on a read-only volume (even root cannot write it)", () => {
    let readOnly: string;
    beforeAll(() => {
      readOnly = path.join(dir, "read-only");
      mountTmpfs(readOnly, 1024 * 1024, true);
    });
    afterAll(() => unmountTmpfs(readOnly));

    it("an unwritable --data-dir", async () => {
      const dataDir = path.join(readOnly, "data");
      const run = await regcache(["serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--certs-dir", certsDir]);
      expectFailure(run, 1, `regcache: cannot write to --data-dir ${dataDir}: read-only file system`);
    });

    it("an unwritable --certs-dir without a CA", async () => {
      const unwritable = path.join(readOnly, "certs");
      const run = await regcache(["serve", "--listen", "127.0.0.1:0", "--data-dir", path.join(dir, "data"), "--certs-dir", unwritable]);
      expectFailure(run, 1, `regcache: cannot create certs dir ${unwritable}: read-only file system`);
      expectFailure(await regcache(["ca", "init", "--certs-dir", unwritable]), 1, `regcache: cannot create certs dir ${unwritable}: read-only file system`);
    });
  });
});

describe.skipIf(hungMountUnavailable())("a --data-dir on a mount that stopped answering", () => {
  let dir: string;
  let mount: HungMount;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "cli-hung-"));
    mount = new HungMount(dir);
    await mount.start();
  });
  afterAll(async () => {
    await mount?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("serve gives up after 5 s with one line that names the option and the path, instead of hanging", async () => {
    const dataDir = path.join(mount.mountPoint, "data");
    const run = await regcache(["serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--certs-dir", path.join(dir, "certs")]);
    expectFailure(run, 1, `regcache: cannot reach --data-dir ${dataDir}: its filesystem did not answer within 5 s (a network mount whose server is down?)`);
  });
});

describe.skipIf(missingTools(OLD_NODE).length > 0)("on Node.js 18 (Debian 12's)", () => {
  it("says which Node.js is needed, in one line, before loading anything that fails on it", async () => {
    for (const args of [["serve"], ["--version"]]) {
      expectFailure(
        await regcache(args, { node: OLD_NODE }),
        1,
        "regcache: Node.js 20.18 or newer is required (this is 18.19.0); on Debian 12 install it from NodeSource or use the official binaries: https://nodejs.org/en/download",
      );
    }
  });
});

describe("serve's signals", () => {
  let dir: string;
  let proxy: RegcacheProcess;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "cli-signals-"));
    // The drain delay holds shutdown for 30 s, as in-flight downloads would.
    proxy = new RegcacheProcess(path.join(dir, "data"), path.join(dir, "certs"), ["--drain-delay", "30s", "--shutdown-grace", "30s"]);
    await proxy.start();
  });
  afterAll(async () => {
    await proxy.stop("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });

  it("logs the CA's fingerprint at start-up", () => {
    const loaded = proxy.logs.find((l) => l.msg === "root CA loaded");
    expect(loaded?.sha256Fingerprint).toBe(new X509Certificate(readFileSync(proxy.caFile)).fingerprint256);
  });

  it("a second Ctrl-C during shutdown exits at once, with 130", async () => {
    process.kill(proxy.pid!, "SIGINT");
    await proxy.waitForLog((l) => l.msg === "shutting down");
    const started = Date.now();
    expect(await proxy.stop("SIGINT")).toBe(130);
    expect(Date.now() - started).toBeLessThan(2_000);
  });
});
