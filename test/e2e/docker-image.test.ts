import { appendFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SkopeoResult } from "./harness/clients.js";
import { TestDockerEngine } from "./harness/docker-engine.js";
import { buildNodeBaseImage, NODE_BASE_TAG, type NodeBaseImage } from "./harness/node-base-image.js";
import { waitFor } from "./harness/ports.js";
import { REPO_ROOT } from "./harness/regcache-process.js";
import { dockerUnavailable, missingTools } from "./harness/tools.js";

const missing = missingTools("debootstrap", "tar", "npm");

const IMAGE = "regcache:image-test";
const REBUILT = "regcache:image-test-rebuilt";
/** Not the image's default (3128): the health check has to follow REGCACHE_LISTEN. */
const PORT = 3999;
/** Measured on a 2-core machine: ~6 min for a first build (sqlite3 compiles for ~2.5 of them). */
const BUILD_TIMEOUT_MS = 15 * 60_000;

/** The build context: the Dockerfile, .dockerignore and what the Dockerfile COPYs from it, so the test can change a source file without touching the checkout. */
function copyContext(to: string): void {
  const dockerfile = readFileSync(path.join(REPO_ROOT, "Dockerfile"), "utf8").replace(/\\\n/g, " ");
  const sources = [...dockerfile.matchAll(/^COPY\s+(?!--from)(.+)$/gm)].flatMap((m) => m[1]!.trim().split(/\s+/).slice(0, -1));
  for (const entry of ["Dockerfile", ".dockerignore", ...sources]) {
    mkdirSync(path.dirname(path.join(to, entry)), { recursive: true });
    cpSync(path.join(REPO_ROOT, entry), path.join(to, entry), { recursive: true });
  }
}

/** The classic builder's output as steps ("RUN npm ci …" → its lines), to see which were taken from the cache. */
function buildSteps(output: string): { instruction: string; cached: boolean }[] {
  return output
    .split(/^Step \d+\/\d+ : /m)
    .slice(1)
    .map((step) => ({ instruction: step.split("\n")[0]!, cached: /^ ---> Using cache$/m.test(step) }));
}

function step(steps: ReturnType<typeof buildSteps>, prefix: string): { instruction: string; cached: boolean } {
  const found = steps.find((s) => s.instruction.startsWith(prefix));
  if (!found) throw new Error(`no build step starting with "${prefix}" in:\n${steps.map((s) => s.instruction).join("\n")}`);
  return found;
}

describe.skipIf(missing.length > 0 || dockerUnavailable())("the container image (Dockerfile), built by Debian's Docker Engine", () => {
  let dir: string;
  let engine: TestDockerEngine;
  let context: string;
  let base: NodeBaseImage;
  let first: SkopeoResult;
  const timings: string[] = [];

  async function timed<T>(what: string, work: () => Promise<T>): Promise<T> {
    const started = Date.now();
    try {
      return await work();
    } finally {
      timings.push(`${what} ${((Date.now() - started) / 1000).toFixed(0)} s`);
    }
  }

  function ok(result: SkopeoResult, what: string): string {
    expect(result.ok, `${what}:\n${result.stdout.slice(-3000)}\n${result.stderr}\n--- dockerd (tail) ---\n${engine.output.slice(-2000)}`).toBe(true);
    return result.stdout;
  }

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "regcache-image-"));
    engine = new TestDockerEngine(path.join(dir, "dockerd"));
    await engine.start(undefined, { storageDriver: "overlay2" });
    base = await timed(`${NODE_BASE_TAG} stand-in`, () => buildNodeBaseImage(engine, dir));
    context = path.join(dir, "context");
    copyContext(context);
    first = await timed("first build", () => engine.build(context, IMAGE, BUILD_TIMEOUT_MS));
  }, BUILD_TIMEOUT_MS + 10 * 60_000);

  afterAll(async () => {
    process.stdout.write(`docker image test (Node ${base?.nodeVersion}, npm ${base?.npmVersion}, Debian root filesystem ${base?.rootfsCached ? "cached" : "debootstrapped"}): ${timings.join(", ")}\n`);
    await engine?.stop();
    if (dir && process.env.REGCACHE_KEEP_TEST_DIRS !== "1") rmSync(dir, { recursive: true, force: true });
  });

  it("builds, with the dependency steps before the source", () => {
    ok(first, "docker build");
    const steps = buildSteps(first.stdout).map((s) => s.instruction);
    const index = (prefix: string) => steps.findIndex((s) => s.startsWith(prefix));
    expect(index("RUN npm ci")).toBeGreaterThan(index("COPY package.json package-lock.json"));
    expect(index("COPY src")).toBeGreaterThan(index("RUN npm ci"));
  });

  it("runs as uid 10001 and turns healthy on a port set with REGCACHE_LISTEN; the health check probes that port", async () => {
    const name = "regcache-health";
    ok(await engine.docker(["run", "-d", "--name", name, "--network", "none", "-e", `REGCACHE_LISTEN=0.0.0.0:${PORT}`, "--health-interval", "2s", IMAGE]), "docker run");
    const status = async () => (await engine.docker(["inspect", "--format", "{{.State.Health.Status}}", name])).stdout.trim();
    await waitFor(async () => (await status()) === "healthy", 90_000, "the container's health status to be healthy").catch(async (err: Error) => {
      throw new Error(`${err.message} (it is ${await status()}); its log:\n${(await engine.docker(["logs", name])).stderr.slice(-3000)}`);
    });
    const log = JSON.parse(ok(await engine.docker(["inspect", "--format", "{{json .State.Health.Log}}", name]), "inspect")) as { ExitCode: number; Output: string }[];
    expect(log.find((l) => l.ExitCode === 0)?.Output).toBe(`healthy: http://127.0.0.1:${PORT}/healthz answered 200\n`);
    // Nothing answers on the image's default port, so the healthy status came from PORT.
    const defaultPort = await engine.docker(["exec", name, "regcache", "health", "--listen", "0.0.0.0:3128"]);
    expect(defaultPort.ok).toBe(false);
    expect(defaultPort.stdout).toMatch(/^unhealthy: http:\/\/127\.0\.0\.1:3128\/healthz: .*ECONNREFUSED/);
    expect(ok(await engine.docker(["exec", name, "regcache", "health", "--ready"]), "health --ready")).toBe(`healthy: http://127.0.0.1:${PORT}/readyz answered 200\n`);

    // tini and node (and a health check, if one is running), as the host sees them; and the CA the first start created belongs to them.
    const top = ok(await engine.docker(["top", name, "-o", "pid,uid,args"]), "docker top").trim().split("\n").slice(1);
    expect(top.length).toBeGreaterThanOrEqual(2);
    for (const line of top) expect(line.trim().split(/\s+/)[1], line).toBe("10001");
    expect(ok(await engine.docker(["exec", name, "stat", "-c", "%u:%g %a", "/certs/ca.key"]), "stat")).toBe("10001:10001 600\n");

    // docker stop sends the image's STOPSIGNAL through tini; regcache drains (--drain-delay 5 s) and exits 0.
    const stop = await engine.docker(["stop", "-t", "40", name], 60_000);
    ok(stop, "docker stop");
    expect(stop.durationMs).toBeLessThan(35_000);
    expect(ok(await engine.docker(["inspect", "--format", "{{.State.ExitCode}}", name]), "inspect")).toBe("0\n");
    expect((await engine.docker(["logs", name])).stdout).toContain('"signal":"SIGTERM"');
  }, 180_000);

  it("ships no sqlite3 build leftovers, no build tools and no dev dependencies", async () => {
    const script = "cd /app/node_modules && find sqlite3 -path sqlite3/node_modules -prune -o -type f -path '*/build/*' -print && du -sk sqlite3 && ls -d node-gyp typescript vitest 2>&1; command -v g++ make python3 || true";
    const out = ok(await engine.docker(["run", "--rm", "--network", "none", "--entrypoint", "sh", IMAGE, "-c", script]), "inspecting the image").trim().split("\n");
    expect(out[0]).toBe("sqlite3/build/Release/node_sqlite3.node");
    // The addon is ~2.2 MB; with the build's objects, static libraries and sources sqlite3 was ~23 MB.
    expect(Number(out[1]!.split(/\s+/)[0])).toBeLessThan(4_096);
    expect(out.slice(2)).toEqual(["ls: cannot access 'node-gyp': No such file or directory", "ls: cannot access 'typescript': No such file or directory", "ls: cannot access 'vitest': No such file or directory"]);
  }, 120_000);

  it("rebuilds a one-line source change without reinstalling or recompiling the dependencies", async () => {
    const marker = `// rebuilt ${Date.now()}`;
    appendFileSync(path.join(context, "src/version.ts"), `${marker}\n`);
    const rebuild = await timed("rebuild after a one-line change", () => engine.build(context, REBUILT, BUILD_TIMEOUT_MS));
    const steps = buildSteps(ok(rebuild, "docker build (again)"));
    expect(step(steps, "RUN npm ci").cached).toBe(true);
    expect(step(steps, "RUN mkdir /prod").cached).toBe(true);
    expect(step(steps, "COPY --from=build /prod/node_modules").cached).toBe(true);
    expect(step(steps, "COPY src").cached).toBe(false);
    expect(ok(await engine.docker(["run", "--rm", "--network", "none", "--entrypoint", "tail", REBUILT, "-n", "3", "/app/dist/version.js"]), "the rebuilt dist")).toContain(marker);
    // The images share their layers up to and including node_modules: the base's, the tini and user one, node_modules.
    const layers = async (image: string) => JSON.parse(ok(await engine.docker(["image", "inspect", "--format", "{{json .RootFS.Layers}}", image]), "inspect")) as string[];
    const [before, after, base] = [await layers(IMAGE), await layers(REBUILT), await layers(NODE_BASE_TAG)];
    const shared = before.findIndex((layer, i) => after[i] !== layer);
    expect(shared).toBeGreaterThanOrEqual(base.length + 2);
  }, BUILD_TIMEOUT_MS);
});
