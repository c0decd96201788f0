import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { DEFAULT_SHUTDOWN_SECONDS } from "./stop-time.js";

const ROOT = path.resolve(__dirname, "../../..");
const dockerfile = readFileSync(path.join(ROOT, "Dockerfile"), "utf8");
/** Instructions with line continuations joined, comments dropped. */
const instructions = dockerfile
  .replace(/\\\n/g, " ")
  .split("\n")
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith("#"));
const stages = instructions.join("\n").split(/^FROM /m).slice(1).map((s) => `FROM ${s}`);
const build = stages[0]!;
const runtime = stages[stages.length - 1]!;
/** Position of the first instruction of `stage` that starts with `prefix`; fails the test when there is none. */
function at(stage: string, prefix: string): number {
  const index = stage.split("\n").findIndex((l) => l.startsWith(prefix));
  expect(index, `an instruction starting with "${prefix}"`).toBeGreaterThanOrEqual(0);
  return index;
}

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
    expect(build).toMatch(/npm ci/);
    expect(build).toMatch(/npm prune [^\n]*--omit=dev/);
    expect(build).toMatch(/g\+\+/);
    expect(runtime).not.toMatch(/npm (ci|install)/);
    expect(runtime).toMatch(/^COPY --from=build \/prod\/node_modules \.\/node_modules$/m);
  });

  it("installs and compiles dependencies before copying the source, so a source change reuses those layers", () => {
    const install = at(build, "RUN npm ci");
    expect(at(build, "COPY package.json package-lock.json .npmrc ./")).toBeLessThan(install);
    expect(at(build, "COPY src")).toBeGreaterThan(at(build, "RUN mkdir /prod"));
    expect(at(build, "RUN mkdir /prod")).toBeGreaterThan(install);
    // The only COPYs before the install are the manifests: anything else would invalidate it.
    expect(build.split("\n").slice(0, install).filter((l) => l.startsWith("COPY "))).toEqual(["COPY package.json package-lock.json .npmrc ./"]);
    // The package's own prepare script (the build) needs src/: scripts are skipped, then sqlite3's runs alone.
    expect(build.split("\n")[install]).toMatch(/^RUN npm ci --ignore-scripts .*&& (\w+=\S+ )*npm rebuild sqlite3 /);
    // The runtime copies node_modules before dist, so its node_modules layer is reused too.
    expect(at(runtime, "COPY --from=build /prod/node_modules")).toBeLessThan(at(runtime, "COPY --from=build /app/dist"));
  });

  it("keeps only the compiled addon of sqlite3's build, and no node-gyp", () => {
    const install = build.split("\n")[at(build, "RUN npm ci")]!;
    expect(install).toContain("rm -rf node_modules/sqlite3/build node_modules/sqlite3/deps node_modules/sqlite3/src");
    expect(install).toMatch(/mv \/tmp\/node_sqlite3\.node node_modules\/sqlite3\/build\/Release\/$/);
    expect(build).toMatch(/npm prune --prefix \/prod --omit=dev --omit=optional/);
  });

  it("allows exactly the install scripts of the locked dependencies that have one (npm allowScripts)", () => {
    const manifest = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { allowScripts?: Record<string, boolean> };
    const lock = JSON.parse(readFileSync(path.join(ROOT, "package-lock.json"), "utf8")) as { packages: Record<string, { hasInstallScript?: boolean }> };
    const withScripts = Object.entries(lock.packages).filter(([, p]) => p.hasInstallScript).map(([key]) => key.replace(/^.*node_modules\//, ""));
    expect(Object.keys(manifest.allowScripts ?? {}).sort()).toEqual([...new Set(withScripts)].sort());
    expect(Object.values(manifest.allowScripts ?? {}).every((allowed) => allowed === true)).toBe(true);
  });

  it("runs as a non-root user (DL3002)", () => {
    const user = runtime.split("\n").filter((l) => l.startsWith("USER ")).pop();
    expect(user).toBeDefined();
    expect(user).not.toMatch(/USER (root|0)(:|$)/);
  });

  it("declares the cache volume but not /certs, whose anonymous volume would be a new CA per run", () => {
    expect(runtime.split("\n").filter((l) => l.startsWith("VOLUME "))).toEqual(['VOLUME ["/data"]']);
    expect(runtime).toMatch(/^EXPOSE 3128$/m);
  });

  it("checks health with `regcache health`, which follows REGCACHE_LISTEN, not a hard-coded port", () => {
    const healthcheck = runtime.split("\n").find((l) => l.startsWith("HEALTHCHECK "));
    expect(healthcheck).toMatch(/ CMD \["regcache", "health"\]$/);
    expect(healthcheck).not.toMatch(/3128/);
    expect(runtime).toMatch(/ln -s \/app\/dist\/cli\/main\.js \/usr\/local\/bin\/regcache/);
  });

  it("runs under tini as PID 1 and stops with SIGTERM, which drains", () => {
    expect(runtime).toMatch(/^ENTRYPOINT \["\/usr\/bin\/tini", "--"/m);
    expect(runtime).toMatch(/^STOPSIGNAL SIGTERM$/m);
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

describe("docker-compose.yml, with this image", () => {
  const compose = parse(readFileSync(path.join(ROOT, "docker-compose.yml"), "utf8")) as {
    services: { regcache: { init?: boolean; stop_grace_period: string; environment: Record<string, string>; logging?: { options?: Record<string, string> } } };
  };
  const service = compose.services.regcache;

  it("adds no second init in front of the image's tini", () => {
    expect(service.init).toBeUndefined();
  });

  it("caps the log, which has a line per request", () => {
    expect(service.logging?.options?.["max-size"]).toBeDefined();
    expect(service.logging?.options?.["max-file"]).toBeDefined();
  });

  it("sets the port where the health check reads it, and gives shutdown its drain delay and grace", () => {
    expect(service.environment.REGCACHE_LISTEN).toMatch(/:3128$/);
    expect(Number(/^(\d+)s$/.exec(service.stop_grace_period)?.[1])).toBeGreaterThan(DEFAULT_SHUTDOWN_SECONDS);
  });
});
