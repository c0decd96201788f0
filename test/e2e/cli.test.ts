import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "./harness/regcache-process.js";

const exec = promisify(execFile);

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
