import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { goClientEnv, TestContainerd, type ProxyEnv, type SkopeoResult } from "./clients.js";
import { waitFor } from "./ports.js";

const exec = promisify(execFile);

/**
 * Debian's docker.io, by absolute path: /usr/local/bin/docker can be a newer client from
 * elsewhere, and the tests are about the engine Debian ships (20.10), client included.
 */
export const DOCKERD = "/usr/sbin/dockerd";
export const DOCKER = "/usr/bin/docker";
const SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";

export interface DockerImageInfo {
  id: string;
  /** quay.test/<repo>@sha256:…, the manifest digests the engine recorded when pulling or pushing. */
  repoDigests: string[];
  /** Uncompressed layer digests (RootFS.Layers): unchanged by the engine's recompression on push. */
  diffIds: string[];
}

export interface DockerEngineOptions {
  /**
   * vfs (the default) needs nothing from the host's filesystem; overlay2 (ext4 or xfs under the
   * data root) shares layers instead of copying the whole root filesystem into each one, which
   * an image build of a dozen layers needs to stay within minutes.
   */
  storageDriver?: "vfs" | "overlay2";
  /** More daemon.json settings (e.g. registry-mirrors, as node-setup.sh writes them). */
  daemonConfig?: Record<string, unknown>;
}

/** Runs a command to its end; never rejects, like skopeoPull: the result says what the user would see. */
function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {}): Promise<SkopeoResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      stderr += `\n[harness] killed after ${opts.timeoutMs ?? 180_000} ms`;
      child.kill("SIGKILL");
    }, opts.timeoutMs ?? 180_000);
    child.on("error", (err) => (stderr += String(err)));
    // EPIPE when the command exits without reading its input (`docker run` without -i): the result says how it ended.
    child.stdin.on("error", () => undefined);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ ok: code === 0, stdout, stderr, durationMs: Date.now() - started });
    });
    child.stdin.end(opts.input ?? "");
  });
}

/** The manifest digest `docker push` reports on its last line ("<tag>: digest: sha256:… size: N"). */
export function pushedDigest(pushOutput: string): string | undefined {
  return /digest: (sha256:[0-9a-f]{64}) size: \d+/.exec(pushOutput)?.[1];
}

/** An OCI layout's image as a `docker load` archive tagged `ref` (skopeo writes the docker-archive format). */
export async function dockerArchiveFromLayout(layoutDir: string, tag: string, ref: string, file: string): Promise<void> {
  await exec("skopeo", ["--insecure-policy", "copy", `oci:${layoutDir}:${tag}`, `docker-archive:${file}:${ref}`], { timeout: 120_000 });
}

/**
 * A throwaway dockerd (root only): its own data root, exec root, socket, daemon.json, trust key
 * and containerd, so it shares nothing with a system Docker or with TestContainerd in other tests.
 * Pulls and pushes run inside dockerd, so dockerd started with a proxy gets HTTPS_PROXY and
 * trusts regcache's CA through SSL_CERT_FILE (Go's system pool; dockerd 20.10 has no flag to move
 * /etc/docker/certs.d, and a missing certs.d/<host> directory means "system pool").
 */
export class TestDockerEngine {
  private child: ChildProcess | undefined;
  private containerd: TestContainerd;
  /** dockerd's stdout and stderr, for diagnosing a failed pull or push. */
  output = "";
  readonly socket: string;
  readonly configDir: string;
  readonly dataRoot: string;
  readonly execRoot: string;

  constructor(readonly dir: string) {
    this.socket = path.join(dir, "docker.sock");
    this.configDir = path.join(dir, "client-config");
    this.dataRoot = path.join(dir, "data");
    this.execRoot = path.join(dir, "exec");
    this.containerd = new TestContainerd(path.join(dir, "containerd"));
  }

  /** Without `proxy`, dockerd pulls nothing through regcache (for building images from local ones). */
  async start(proxy?: ProxyEnv, options: DockerEngineOptions = {}): Promise<void> {
    mkdirSync(this.configDir, { recursive: true });
    // Without its own containerd, dockerd would attach to /run/containerd/containerd.sock whenever a system one runs.
    await this.containerd.start();
    const daemonJson = path.join(this.dir, "daemon.json");
    // Its own daemon.json (not /etc/docker's); the key path, or dockerd writes /etc/docker/key.json (no flag for it in 20.10).
    writeFileSync(daemonJson, `${JSON.stringify({ ...options.daemonConfig, "deprecated-key-path": path.join(this.dir, "key.json") })}\n`);
    const args = [
      "--config-file", daemonJson,
      "--containerd", this.containerd.socket,
      `--storage-driver=${options.storageDriver ?? "vfs"}`, "--iptables=false", "--ip6tables=false", "--bridge=none",
      "--data-root", this.dataRoot,
      "--exec-root", this.execRoot,
      "--pidfile", path.join(this.dir, "docker.pid"),
      "-H", `unix://${this.socket}`,
    ];
    const child = spawn(DOCKERD, args, { stdio: ["ignore", "pipe", "pipe"], env: proxy ? this.proxiedEnv(proxy) : process.env });
    this.child = child;
    child.stdout!.on("data", (c: Buffer) => (this.output += c.toString()));
    child.stderr!.on("data", (c: Buffer) => (this.output += c.toString()));
    const exited = new Promise<never>((_, reject) => child.once("exit", (code) => reject(new Error(`dockerd exited with ${code}:\n${this.output.slice(-4000)}`))));
    exited.catch(() => undefined);
    await Promise.race([
      exited,
      waitFor(async () => (await this.docker(["version", "--format", "{{.Server.Version}}"], 5_000)).ok, 60_000, "dockerd to answer"),
    ]);
  }

  /** HTTPS_PROXY to regcache, and SSL_CERT_FILE with its CA beside the system ones. */
  private proxiedEnv(proxy: ProxyEnv): NodeJS.ProcessEnv {
    const bundle = path.join(this.dir, "ca-bundle.crt");
    // The system CAs too (when ca-certificates is installed; docker.io only recommends it): SSL_CERT_FILE replaces that file.
    const system = existsSync(SYSTEM_BUNDLE) ? readFileSync(SYSTEM_BUNDLE, "utf8") : "";
    writeFileSync(bundle, `${system}\n${readFileSync(proxy.caFile, "utf8")}`);
    return { ...goClientEnv(proxy), SSL_CERT_FILE: bundle };
  }

  /** The Debian docker client against this daemon, with its own credential store (--config). */
  docker(args: string[], timeoutMs = 300_000, input?: string, extraEnv: NodeJS.ProcessEnv = {}): Promise<SkopeoResult> {
    const env = { ...process.env, DOCKER_HOST: undefined, DOCKER_CONTEXT: undefined, DOCKER_CONFIG: undefined, ...extraEnv };
    return run(DOCKER, ["--config", this.configDir, "-H", `unix://${this.socket}`, ...args], { env, timeoutMs, input });
  }

  /**
   * `docker build` with the classic builder, which this engine's client uses unless told
   * otherwise, and whose "Using cache" lines tell which steps were reused. RUN steps share the
   * host's network: the engine has no bridge (--bridge=none), and they reach the package
   * registries directly, not through any proxy.
   */
  build(contextDir: string, tag: string, timeoutMs: number): Promise<SkopeoResult> {
    return this.docker(["build", "--network", "host", "-t", tag, contextDir], timeoutMs, undefined, { DOCKER_BUILDKIT: "0" });
  }

  load(tarFile: string): Promise<SkopeoResult> {
    return this.docker(["load", "-i", tarFile]);
  }

  tag(source: string, target: string): Promise<SkopeoResult> {
    return this.docker(["tag", source, target]);
  }

  /** `docker login` (the daemon checks the credentials against the registry, through the proxy). */
  login(registry: string, creds: string): Promise<SkopeoResult> {
    const colon = creds.indexOf(":");
    return this.docker(["login", "-u", creds.slice(0, colon), "--password-stdin", registry], 60_000, creds.slice(colon + 1));
  }

  async push(ref: string, creds?: string): Promise<SkopeoResult> {
    if (creds) {
      const login = await this.login(ref.split("/")[0]!, creds);
      if (!login.ok) return login;
    }
    return this.docker(["push", ref]);
  }

  async pull(ref: string, creds?: string): Promise<SkopeoResult> {
    if (creds) {
      const login = await this.login(ref.split("/")[0]!, creds);
      if (!login.ok) return login;
    }
    return this.docker(["pull", ref]);
  }

  rmi(ref: string): Promise<SkopeoResult> {
    return this.docker(["rmi", ref]);
  }

  async inspect(ref: string): Promise<DockerImageInfo> {
    const result = await this.docker(["image", "inspect", "--format", "{{json .}}", ref], 30_000);
    if (!result.ok) throw new Error(`docker image inspect ${ref}: ${result.stderr}`);
    const info = JSON.parse(result.stdout) as { Id: string; RepoDigests: string[] | null; RootFS: { Layers: string[] | null } };
    return { id: info.Id, repoDigests: info.RepoDigests ?? [], diffIds: info.RootFS.Layers ?? [] };
  }

  /** SIGTERM (dockerd then unmounts its data root), SIGKILL after 30 s; then containerd, leftover mounts, and the directory. */
  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      await exited;
      clearTimeout(timer);
    }
    await this.containerd.stop();
    await unmountUnder(this.dir);
    if (process.env.REGCACHE_KEEP_TEST_DIRS !== "1") rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Unmounts whatever is still mounted under `dir` (a SIGKILLed dockerd leaves its data-root bind mount), deepest first. */
export async function unmountUnder(dir: string): Promise<void> {
  const mounts = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((m): m is string => m !== undefined)
    // mountinfo escapes space, tab, newline and backslash as octal.
    .map((m) => m.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8))))
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const mount of mounts) await exec("umount", ["-l", mount]).catch(() => undefined);
}
