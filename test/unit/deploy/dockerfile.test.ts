import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = path.resolve(__dirname, "../../..");
const dockerfile = readFileSync(path.join(ROOT, "Dockerfile"), "utf8");
/** Instructions with line continuations joined, comments dropped. */
const instructions = dockerfile
  .replace(/\\\n/g, " ")
  .split("\n")
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith("#"));
const stages = instructions.join("\n").split(/^FROM /m).slice(1).map((s) => `FROM ${s}`);
const runtime = stages[stages.length - 1]!;

/**
 * hadolint cannot be installed from the registries this project reaches, so its rules
 * that matter here are checked directly (rule ids in the test names).
 */
describe("Dockerfile", () => {
  it("is a multi-stage build on node:24-bookworm-slim with pinned tags (DL3006, DL3007)", () => {
    const froms = instructions.filter((l) => l.startsWith("FROM "));
    expect(froms.length).toBeGreaterThanOrEqual(2);
    for (const from of froms) {
      expect(from).toMatch(/^FROM node:24-bookworm-slim( AS \w+)?$/);
      expect(from).not.toContain(":latest");
    }
  });

  it("builds native modules in the builder and ships no dev dependencies", () => {
    expect(stages[0]).toMatch(/npm ci/);
    expect(stages[0]).toMatch(/npm prune --omit=dev/);
    expect(stages[0]).toMatch(/g\+\+/);
    expect(runtime).not.toMatch(/npm (ci|install)/);
    expect(runtime).toMatch(/COPY --from=build \/app\/node_modules/);
  });

  it("runs as a non-root user (DL3002)", () => {
    const user = runtime.split("\n").filter((l) => l.startsWith("USER ")).pop();
    expect(user).toBeDefined();
    expect(user).not.toMatch(/USER (root|0)(:|$)/);
  });

  it("declares volumes, port, a health check on /healthz and tini as PID 1", () => {
    expect(runtime).toMatch(/^VOLUME \["\/data", "\/certs"\]$/m);
    expect(runtime).toMatch(/^EXPOSE 3128$/m);
    expect(runtime).toMatch(/^HEALTHCHECK .*\/healthz/m);
    expect(runtime).toMatch(/^ENTRYPOINT \["\/usr\/bin\/tini", "--"/m);
  });

  it("installs apt packages without recommends and cleans the lists (DL3015, DL3009)", () => {
    for (const run of instructions.filter((l) => l.startsWith("RUN ") && l.includes("apt-get install"))) {
      expect(run).toContain("--no-install-recommends");
      expect(run).toContain("rm -rf /var/lib/apt/lists/*");
      expect(run).toContain("apt-get update");
    }
  });

  it("uses COPY, not ADD, and absolute WORKDIR (DL3020, DL3000)", () => {
    expect(instructions.some((l) => l.startsWith("ADD "))).toBe(false);
    for (const w of instructions.filter((l) => l.startsWith("WORKDIR "))) expect(w).toMatch(/^WORKDIR \//);
  });

  it("has a .dockerignore that keeps secrets, caches and build output out of the context", () => {
    const ignore = readFileSync(path.join(ROOT, ".dockerignore"), "utf8").split("\n");
    for (const entry of [".git", "node_modules", "dist", "data", "certs"]) expect(ignore).toContain(entry);
  });
});
