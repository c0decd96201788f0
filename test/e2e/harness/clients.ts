import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { waitFor, stopProcess } from "./ports.js";
import { CLI } from "./regcache-process.js";

const exec = promisify(execFile);

export interface ProxyEnv {
  proxyUrl: string;
  caFile: string;
  /** "user:password" for --proxy-auth, put into HTTPS_PROXY as Go clients expect. */
  proxyUser?: string;
}

/** Go clients read the proxy from HTTPS_PROXY and extra trust from SSL_CERT_FILE. */
export function goClientEnv(p: ProxyEnv): NodeJS.ProcessEnv {
  const proxy = p.proxyUser ? p.proxyUrl.replace("http://", `http://${p.proxyUser}@`) : p.proxyUrl;
  return { ...process.env, HTTPS_PROXY: proxy, https_proxy: proxy, NO_PROXY: "", no_proxy: "", SSL_CERT_FILE: p.caFile };
}

export interface SkopeoResult {
  ok: boolean;
  stdout: string;
  stderr: string;
  durationMs: number;
}

/** skopeo copy from the registry (through the proxy) into an OCI layout. */
export async function skopeoPull(p: ProxyEnv, image: string, dest: string, opts: PullOptions = {}): Promise<SkopeoResult> {
  return runTool("skopeo", pullArgs([], image, dest, opts), goClientEnv(p), opts.timeoutMs ?? 120_000);
}

interface PullOptions {
  all?: boolean;
  creds?: string;
  timeoutMs?: number;
}

function pullArgs(extra: string[], image: string, dest: string, opts: PullOptions): string[] {
  return ["--insecure-policy", "copy", "--retry-times", "0", ...extra, ...(opts.all ? ["--all"] : []), ...(opts.creds ? ["--src-creds", opts.creds] : ["--src-no-creds"]), `docker://${image}`, `oci:${dest}:latest`];
}

/** Runs a client to completion; its outcome, whatever the exit code, for tests to assert on. */
export async function runTool(command: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<SkopeoResult> {
  const started = Date.now();
  try {
    const { stdout, stderr } = await exec(command, args, { env, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 });
    return { ok: true, stdout, stderr, durationMs: Date.now() - started };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return { ok: false, stdout: e.stdout ?? "", stderr: e.stderr ?? String(err), durationMs: Date.now() - started };
  }
}

/** skopeo copy of an OCI layout into the registry directly (not through regcache). */
export async function skopeoPush(layoutDir: string, tag: string, registry: string, repo: string, certDir: string, creds?: string): Promise<void> {
  const args = ["--insecure-policy", "copy", "--all", "--dest-cert-dir", certDir];
  if (creds) args.push("--dest-creds", creds);
  args.push(`oci:${layoutDir}:${tag}`, `docker://${registry}/${repo}:${tag}`);
  await exec("skopeo", args, { env: { ...process.env, HTTPS_PROXY: "", https_proxy: "" }, timeout: 300_000 });
}

/** Hashes every blob of an OCI layout; returns the digests whose content does not match their name. */
export function corruptBlobsInLayout(dir: string): { checked: number; corrupt: string[] } {
  const blobDir = path.join(dir, "blobs", "sha256");
  const corrupt: string[] = [];
  let checked = 0;
  for (const hex of readdirSync(blobDir)) {
    const actual = createHash("sha256").update(readFileSync(path.join(blobDir, hex))).digest("hex");
    checked += 1;
    if (actual !== hex) corrupt.push(hex);
  }
  return { checked, corrupt };
}

export function layoutDigests(dir: string): string[] {
  return readdirSync(path.join(dir, "blobs", "sha256")).map((hex) => `sha256:${hex}`);
}

export interface CtrPullOptions {
  allPlatforms?: boolean;
  user?: string;
  namespace?: string;
}

/** A throwaway containerd (root only) with its own root, state and socket. */
export class TestContainerd {
  private child: ChildProcess | undefined;
  readonly socket: string;

  constructor(readonly dir: string) {
    this.socket = path.join(dir, "containerd.sock");
  }

  async start(): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    const config = path.join(this.dir, "config.toml");
    writeFileSync(
      config,
      [
        "version = 2",
        `root = "${path.join(this.dir, "root")}"`,
        `state = "${path.join(this.dir, "state")}"`,
        "[grpc]",
        `  address = "${this.socket}"`,
        '[plugins."io.containerd.grpc.v1.cri"]',
        "  disable = true",
        "",
      ].join("\n"),
    );
    this.child = spawn("containerd", ["--config", config], { stdio: "ignore" });
    await waitFor(async () => {
      await exec("ctr", ["--address", this.socket, "version"], { timeout: 5_000 });
      return true;
    }, 20_000, "containerd to start");
  }

  /** `ctr images pull` (the fetch runs in the ctr process, which reads HTTPS_PROXY). */
  /** `namespace`: containerd keeps content per namespace, so a new one pulls as a fresh node would. */
  async pull(p: ProxyEnv, image: string, opts: CtrPullOptions = {}): Promise<SkopeoResult> {
    return runTool("ctr", this.pullArgs(image, opts), goClientEnv(p), 180_000);
  }

  /**
   * `ctr images pull --hosts-dir DIR` without a proxy: the registry hosts (mirrors first) come from
   * DIR's hosts.toml files, as a node's containerd reads /etc/containerd/certs.d. `trust` is the
   * system pool (SSL_CERT_FILE: the registries' CA); `wrapper` runs ctr (withHostsFile).
   */
  async pullWithHosts(hostsDir: string, image: string, opts: CtrPullOptions & { trust: string; wrapper?: string[] }): Promise<SkopeoResult> {
    const env = { ...process.env, HTTPS_PROXY: "", https_proxy: "", HTTP_PROXY: "", http_proxy: "", SSL_CERT_FILE: opts.trust };
    const [command, ...args] = [...(opts.wrapper ?? []), "ctr", ...this.pullArgs(image, opts, ["--hosts-dir", hostsDir])];
    return runTool(command!, args, env, 180_000);
  }

  private pullArgs(image: string, opts: CtrPullOptions, extra: string[] = []): string[] {
    const args = ["--address", this.socket, "--namespace", opts.namespace ?? "regcache-test", "images", "pull", "--snapshotter", "native", ...extra];
    if (opts.allPlatforms) args.push("--all-platforms");
    if (opts.user) args.push("--user", opts.user);
    args.push(image);
    return args;
  }

  /** Digests of every content blob containerd holds, after verifying each against its name. */
  async contentDigests(): Promise<string[]> {
    const { stdout } = await exec("ctr", ["--address", this.socket, "--namespace", "regcache-test", "content", "ls", "-q"], { timeout: 10_000 });
    return stdout.split("\n").filter((l) => l.startsWith("sha256:"));
  }

  async verifyContent(): Promise<{ checked: number; corrupt: string[] }> {
    const digests = await this.contentDigests();
    const corrupt: string[] = [];
    for (const digest of digests) {
      const file = path.join(this.dir, "root", "io.containerd.content.v1.content", "blobs", "sha256", digest.slice(7));
      const actual = `sha256:${createHash("sha256").update(readFileSync(file)).digest("hex")}`;
      if (actual !== digest) corrupt.push(digest);
    }
    return { checked: digests.length, corrupt };
  }

  async stop(): Promise<void> {
    await stopProcess(this.child, "SIGTERM");
  }
}

export interface CurlResult {
  exitCode: number;
  status: number;
  /** Status the proxy gave the CONNECT (0 when none was sent). */
  connectStatus: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** curl through the proxy, trusting regcache's CA; returns the last response's status, headers and body. */
export async function curlThrough(p: ProxyEnv, url: string, extra: string[] = [], timeoutMs = 60_000): Promise<CurlResult> {
  const { mkdtempSync, readFileSync: read, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const dir = mkdtempSync(path.join(tmpdir(), "curl-"));
  const headerFile = path.join(dir, "headers");
  const bodyFile = path.join(dir, "body");
  let exitCode = 0;
  let stdout = "";
  try {
    ({ stdout } = await exec("curl", ["-s", "-D", headerFile, "-o", bodyFile, "-w", "%{http_connect} %{http_code}", "--cacert", p.caFile, "-x", p.proxyUrl, ...extra, url], { timeout: timeoutMs }));
  } catch (err) {
    const e = err as { code?: number; stdout?: string };
    exitCode = typeof e.code === "number" ? e.code : -1;
    stdout = e.stdout ?? "";
  }
  const headers: Record<string, string> = {};
  let rawHeaders = "";
  try {
    rawHeaders = read(headerFile, "utf8");
  } catch {
    // no response at all
  }
  const blocks = rawHeaders.split(/\r\n\r\n/).filter((b) => b.startsWith("HTTP/"));
  for (const line of (blocks.pop() ?? "").split("\r\n").slice(1)) {
    const colon = line.indexOf(":");
    if (colon > 0) headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  let body = Buffer.alloc(0);
  try {
    body = read(bodyFile);
  } catch {
    // empty
  }
  rmSync(dir, { recursive: true, force: true });
  const [connectStatus, status] = stdout.trim().split(" ").map((v) => Number(v) || 0);
  return { exitCode, status: status ?? 0, connectStatus: connectStatus ?? 0, headers, body };
}

/** Runs `regcache prefetch` with these arguments; resolves with its exit code and output, whatever the code. */
export async function runPrefetch(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [CLI, "prefetch", ...args], { timeout: 120_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

export interface PushThroughOptions {
  /** Copy every instance of an index (skopeo --all). */
  all?: boolean;
  /** "user:password" for --dest-creds; without it the push is anonymous (--dest-no-creds). */
  creds?: string;
  /**
   * A directory to stand in for skopeo's blob info cache (the known locations of blobs,
   * from which containers/image decides on cross-repository mounts). Without it skopeo
   * uses the machine's: /var/lib/containers/cache for root, shared by every run.
   */
  blobInfoCacheDir?: string;
  timeoutMs?: number;
}

/**
 * skopeo copy of an OCI layout to the registry THROUGH regcache: `destRef` is
 * "quay.test/<repo>:<tag>". As root, containers/image keeps its blob info cache at the
 * fixed /var/lib/containers/cache, so a private one is bind-mounted there in a
 * mount namespace of skopeo's own; otherwise XDG_DATA_HOME points at it.
 */
export async function skopeoPushThrough(p: ProxyEnv, layoutDir: string, tag: string, destRef: string, opts: PushThroughOptions = {}): Promise<SkopeoResult> {
  const args = ["--insecure-policy", "copy", "--retry-times", "0"];
  if (opts.all) args.push("--all");
  if (opts.creds) args.push("--dest-creds", opts.creds);
  else args.push("--dest-no-creds");
  args.push(`oci:${layoutDir}:${tag}`, `docker://${destRef}`);
  let command = "skopeo";
  let env = goClientEnv(p);
  if (opts.blobInfoCacheDir) {
    mkdirSync(opts.blobInfoCacheDir, { recursive: true });
    if (process.getuid?.() === 0) {
      const systemCache = "/var/lib/containers/cache";
      command = "unshare";
      args.unshift("--mount", "--propagation", "private", "sh", "-c", `mkdir -p ${systemCache} && mount --bind "$0" ${systemCache} && exec skopeo "$@"`, opts.blobInfoCacheDir);
    } else {
      env = { ...env, XDG_DATA_HOME: opts.blobInfoCacheDir };
    }
  }
  return runTool(command, args, env, opts.timeoutMs ?? 300_000);
}

/**
 * skopeo copy from the registry straight into an OCI layout at `dest` (tag "latest"), not
 * through regcache: `image` is "<host:port>/<repo>:<tag>", trust comes from `certDir`.
 */
export async function skopeoPullDirect(image: string, dest: string, certDir: string, opts: PullOptions = {}): Promise<SkopeoResult> {
  return runTool("skopeo", pullArgs(["--src-cert-dir", certDir], image, dest, opts), { ...process.env, HTTPS_PROXY: "", https_proxy: "", HTTP_PROXY: "", http_proxy: "" }, opts.timeoutMs ?? 300_000);
}

/** The digest an OCI layout's index.json points to for `tag` (or its only entry). */
export function layoutTopDigest(dir: string, tag?: string): string {
  const index = JSON.parse(readFileSync(path.join(dir, "index.json"), "utf8")) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
  const entry = tag === undefined && index.manifests.length === 1 ? index.manifests[0] : index.manifests.find((m) => m.annotations?.["org.opencontainers.image.ref.name"] === tag);
  if (!entry) throw new Error(`${dir}/index.json has no entry for ${tag ?? "its only image"}: ${JSON.stringify(index.manifests)}`);
  return entry.digest;
}
