import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runTool, skopeoPull, skopeoPush, TestContainerd, type ProxyEnv, type SkopeoResult } from "./harness/clients.js";
import { withHostsFile } from "./harness/dns-server.js";
import { TestDockerEngine } from "./harness/docker-engine.js";
import { TestEnvironment } from "./harness/environment.js";
import { writeOciImage, type BuiltImage } from "./harness/oci-image.js";
import { freePort, waitFor } from "./harness/ports.js";
import { exchange, tlsDirect } from "./harness/raw-http.js";
import { REPO_ROOT, type LogLine, type RegcacheProcess } from "./harness/regcache-process.js";
import { TestRegistry } from "./harness/registry.js";
import { TokenServer } from "./harness/token-server.js";
import { containerdUnavailable, dockerUnavailable, missingTools } from "./harness/tools.js";

const exec = promisify(execFile);
const missing = missingTools("docker-registry", "skopeo", "openssl", "curl", "dash", "unshare");
const noContainerd = containerdUnavailable();
const noDocker = dockerUnavailable();

const GOOD = "alice:s3cret-pass";
/** The name nodes reach the mirror by: in its certificate, resolved by the clients' hosts file. */
const MIRROR_NAME = "regcache.test";
/** Docker Hub's API host: the token-auth registry stands in for it (library/ is public, as on Hub). */
const HUB = "registry-1.docker.io";

interface Image extends BuiltImage {
  /** host:port/repo */
  repo: string;
  /** host:port/repo:tag */
  ref: string;
  /** host:port/repo@digest */
  byDigest: string;
}

/**
 * The mirror endpoint with real runtimes: two registries on loopback under their own names (a
 * token-auth one that also plays Docker Hub, and an open one), one regcache serving both as proxy
 * and mirror, and the files node-setup.sh writes for containerd, containers/image and Docker.
 */
describe.skipIf(missing.length > 0 || noContainerd)("mirror mode: runtimes use regcache as a registry mirror, falling back to the registry", () => {
  let env: TestEnvironment;
  let tokens: TokenServer;
  let open: TestRegistry;
  let regcache: RegcacheProcess;
  let mirrorPort: number;
  /** quay.test:PORT (token auth) and ghcr.test:PORT (open), as clients name them. */
  let quay: string;
  let ghcr: string;
  let root: string;
  let hostsFile: string;
  let containerd: TestContainerd;
  const images: Record<string, Image> = {};

  /** An image pushed straight to a registry (not through regcache). */
  async function push(registry: TestRegistry, host: string, repo: string, tag: string, layerSizes: number[], platforms: 1 | 2 = 1, creds?: string): Promise<Image> {
    const layout = env.path("layouts", `${host}-${repo}`.replace(/[/:]/g, "_"));
    const built = writeOciImage(layout, tag, layerSizes, platforms);
    await skopeoPush(layout, tag, registry.url, repo, env.pki.certDir, creds);
    return { ...built, repo: `${host}/${repo}`, ref: `${host}/${repo}:${tag}`, byDigest: `${host}/${repo}@${built.topDigest}` };
  }

  async function nodeSetup(args: string[]): Promise<void> {
    await exec("dash", [path.join(REPO_ROOT, "deploy/node-setup.sh"), "--root", root, "--mode", "mirror", "--ca", regcache.caFile, ...args]);
  }

  /** ctr with the certs.d that node-setup.sh wrote, as a node's containerd reads it. */
  function ctrPull(client: TestContainerd, image: string, opts: { allPlatforms?: boolean; user?: string; namespace?: string } = {}): Promise<SkopeoResult> {
    return client.pullWithHosts(path.join(root, "etc/containerd/certs.d"), image, { ...opts, trust: env.pki.caCert, wrapper: withHostsFile(hostsFile) });
  }

  /** Mirror request lines (after `from`) matching `match`. */
  function mirrorLines(from: number, match: (l: LogLine) => boolean): LogLine[] {
    return regcache.logs.slice(from).filter((l) => l.msg === "request" && l.mirror !== undefined && match(l));
  }

  /** regcache answered everything it was asked without a fault of its own (they log at error, 50). */
  function expectNoFaults(): void {
    expect(regcache.logs.filter((l) => l.level >= 50)).toEqual([]);
  }

  /** Waits until the registry has logged a blob GET for each digest (it logs after answering), then says how many each got. */
  /** How many times the registry sent each blob (a refused GET, relayed to a client upstream refuses, sends nothing). */
  async function blobGetCounts(registry: TestRegistry, digests: string[]): Promise<number[]> {
    const sent = (d: string) => registry.blobGets(d).filter((e) => e.status === 200);
    await waitFor(() => digests.every((d) => sent(d).length > 0), 5_000, "the registry's blob GET lines");
    return digests.map((d) => sent(d).length);
  }

  /** Blobs of an image: layers and configs (manifests are fetched by digest as manifests). */
  const blobsOf = (image: Image): string[] => image.allDigests.filter((d) => !image.manifests.some((m) => m.digest === d) && d !== image.topDigest);

  beforeAll(async () => {
    const tokenPort = await freePort();
    env = new TestEnvironment("mirror", { tokenRealm: `https://127.0.0.1:${tokenPort}/token` }, ["ghcr.test", HUB]);
    tokens = new TokenServer(env.pki, { alice: "s3cret-pass" }, { anonymousPull: ["public/", "library/"] });
    await tokens.start(tokenPort);
    await env.start();
    open = new TestRegistry({ dir: env.path("open-registry"), pki: env.pki });
    await open.start();
    quay = `quay.test:${env.registry.port}`;
    ghcr = `ghcr.test:${open.port}`;
    const pushes: [string, () => Promise<Image>][] = [
      ["multi", () => push(env.registry, quay, "public/multi", "1", [120_000], 2, GOOD)],
      ["secret", () => push(env.registry, quay, "corp/secret", "1", [90_000], 1, GOOD)],
      ["viaProxy", () => push(env.registry, quay, "public/via-proxy", "1", [70_000], 1, GOOD)],
      ["viaMirror", () => push(env.registry, quay, "public/via-mirror", "1", [70_000], 1, GOOD)],
      ["viaSkopeo", () => push(env.registry, quay, "public/via-skopeo", "1", [60_000], 1, GOOD)],
      ["hub", () => push(env.registry, HUB, "library/hello", "1", [80_000], 1, GOOD)],
      ["app", () => push(open, ghcr, "team/app", "1", [100_000, 50_000])],
      ["stopped", () => push(open, ghcr, "team/fallback-stopped", "1", [40_000])],
      ["blackholed", () => push(open, ghcr, "team/fallback-blackholed", "1", [40_000])],
      ["outage", () => push(open, ghcr, "team/outage", "1", [60_000])],
    ];
    for (const [key, make] of pushes) images[key] = await make();

    mirrorPort = await freePort();
    regcache = env.regcache("mirror", [
      ...["--resolve", `${quay}=127.0.0.1:${env.registry.port}`, "--resolve", `${ghcr}=127.0.0.1:${open.port}`, "--resolve", `${HUB}:443=127.0.0.1:${env.registry.port}`],
      ...["--allow-port", "443", "--allow-port", String(env.registry.port), "--allow-port", String(open.port)],
      ...["--mirror-listen", `127.0.0.1:${mirrorPort}`, "--mirror-name", MIRROR_NAME, "--mirror-name", "127.0.0.1"],
    ]);
    await regcache.start();
    root = env.path("node");
    hostsFile = env.path("hosts");
    writeFileSync(hostsFile, `127.0.0.1 localhost\n127.0.0.1 quay.test ghcr.test ${MIRROR_NAME}\n`);
    await nodeSetup(["--runtime", "containerd", "--mirror", `https://${MIRROR_NAME}:${mirrorPort}`]);
    await nodeSetup(["--runtime", "crio", "--mirror", `https://${MIRROR_NAME}:${mirrorPort}`, "--mirror-registries", `${quay},${ghcr}`]);
    containerd = new TestContainerd(env.path("containerd-1"));
    await containerd.start();
  });
  afterAll(async () => {
    await containerd?.stop();
    await tokens?.stop();
    await open?.stop();
    await env?.cleanup();
  });

  it("node-setup.sh writes containerd's _default/hosts.toml: the mirror first, with regcache's CA beside it", () => {
    const hostsToml = readFileSync(path.join(root, "etc/containerd/certs.d/_default/hosts.toml"), "utf8");
    expect(hostsToml).toContain(`[host."https://${MIRROR_NAME}:${mirrorPort}"]`);
    expect(hostsToml).toContain('ca = "regcache-ca.crt"');
    expect(readFileSync(path.join(root, "etc/containerd/certs.d/_default/regcache-ca.crt"), "utf8").trim()).toBe(readFileSync(regcache.caFile, "utf8").trim());
  });

  it("ctr pulls from two registries through one mirror endpoint, by tag and digest, multi-platform; one upstream GET per blob", async () => {
    const { multi, app } = images as Record<string, Image>;
    const from = regcache.logs.length;
    const byTag = await ctrPull(containerd, multi!.ref, { allPlatforms: true });
    expect(byTag.ok, byTag.stderr).toBe(true);
    const byDigest = await ctrPull(containerd, app!.byDigest);
    expect(byDigest.ok, byDigest.stderr).toBe(true);
    expect((await containerd.verifyContent()).corrupt).toEqual([]);
    expect(await containerd.contentDigests()).toEqual(expect.arrayContaining([...multi!.allDigests, ...app!.allDigests]));
    // containerd names the registry in ns, and everything came through the mirror, from both registries.
    await regcache.waitForLog((l) => l.msg === "request" && l.mirror === "ns" && l.host === "ghcr.test" && l.kind === "blob");
    expect(new Set(mirrorLines(from, (l) => l.kind === "blob").map((l) => `${l.host} ${l.mirror}`))).toEqual(new Set(["quay.test ns", "ghcr.test ns"]));

    // A node that has none of it: the other way round, all from regcache's cache.
    const second = new TestContainerd(env.path("containerd-2"));
    await second.start();
    try {
      const hits = regcache.logs.length;
      expect((await ctrPull(second, multi!.byDigest, { allPlatforms: true })).ok).toBe(true);
      expect((await ctrPull(second, app!.ref)).ok).toBe(true);
      expect((await second.contentDigests()).sort()).toEqual([...new Set([...multi!.allDigests, ...app!.allDigests])].sort());
      const expected = new Set([...blobsOf(multi!), ...blobsOf(app!)]);
      await waitFor(() => new Set(mirrorLines(hits, (l) => l.kind === "blob").map((l) => l.digest)).size >= expected.size, 5_000, "a request line for each blob");
      const blobs = mirrorLines(hits, (l) => l.kind === "blob");
      expect(new Set(blobs.map((l) => l.digest))).toEqual(expected);
      expect(blobs.filter((l) => l.cache !== "HIT")).toEqual([]);
    } finally {
      await second.stop();
    }
    expect(await blobGetCounts(env.registry, blobsOf(multi!))).toEqual(blobsOf(multi!).map(() => 1));
    expect(await blobGetCounts(open, blobsOf(app!))).toEqual(blobsOf(app!).map(() => 1));
    expectNoFaults();
  });

  it("the same cache and access rules as the proxy: a private image cached for alice is refused to an anonymous mirror client, served to one that sends her credentials; public images are hits either way round", async () => {
    const { secret, viaProxy, viaMirror } = images as Record<string, Image>;
    const trustBoth = env.path("trust-both.pem");
    writeFileSync(trustBoth, readFileSync(regcache.caFile, "utf8") + readFileSync(env.pki.caCert, "utf8"));
    const proxyClient: ProxyEnv = { proxyUrl: regcache.proxyUrl, caFile: trustBoth };
    expect((await skopeoPull(proxyClient, secret!.ref, env.path("secret-proxy"), { creds: GOOD })).ok).toBe(true);

    const from = regcache.logs.length;
    const anonymous = await ctrPull(containerd, secret!.ref, { namespace: "anonymous" });
    expect(anonymous.ok).toBe(false);
    expect(anonymous.stderr).toMatch(/401 Unauthorized|authorization/i);
    const layer = `${secret!.layerDigests[0]}`;
    const blob = await curlMirror(`/v2/corp/secret/blobs/${layer}?ns=${quay}`);
    expect(blob.status).toBe(401);
    expect(JSON.parse(blob.body).errors[0].code).toBe("UNAUTHORIZED");
    expect(mirrorLines(from, (l) => l.repository === "corp/secret" && l.status === 200)).toEqual([]);

    const alice = await ctrPull(containerd, secret!.ref, { namespace: "alice", user: GOOD });
    expect(alice.ok, alice.stderr).toBe(true);
    const served = await regcache.waitForLog((l) => l.msg === "request" && l.mirror === "ns" && l.repository === "corp/secret" && l.kind === "blob" && l.status === 200);
    expect(served).toMatchObject({ cache: "HIT", access: "confirmed" });

    // Cached through the proxy, then asked of the mirror; and the other way round.
    expect((await skopeoPull(proxyClient, viaProxy!.ref, env.path("via-proxy"))).ok).toBe(true);
    const before = regcache.logs.length;
    expect((await ctrPull(containerd, viaProxy!.ref)).ok).toBe(true);
    expect((await ctrPull(containerd, viaMirror!.ref)).ok).toBe(true);
    expect((await skopeoPull(proxyClient, viaMirror!.ref, env.path("via-mirror"))).ok).toBe(true);
    const blobLines = () => regcache.logs.slice(before).filter((l) => l.msg === "request" && l.kind === "blob");
    await waitFor(() => blobLines().filter((l) => l.repository === "public/via-mirror" && l.mirror === undefined).length >= blobsOf(viaMirror!).length, 5_000, "the proxy's request lines");
    const after = blobLines();
    expect(after.filter((l) => l.repository === "public/via-proxy" && l.mirror === "ns").map((l) => l.cache)).toEqual(blobsOf(viaProxy!).map(() => "HIT"));
    expect(after.filter((l) => l.repository === "public/via-mirror" && l.mirror === undefined).map((l) => l.cache)).toEqual(blobsOf(viaMirror!).map(() => "HIT"));
    expect(await blobGetCounts(env.registry, [...blobsOf(viaProxy!), ...blobsOf(viaMirror!), ...blobsOf(secret!)])).toEqual([...blobsOf(viaProxy!), ...blobsOf(viaMirror!), ...blobsOf(secret!)].map(() => 1));
    expectNoFaults();
  });

  it("skopeo with the registries.conf.d mirror node-setup.sh writes (the registry as the location's path) pulls through regcache", async () => {
    const { viaSkopeo } = images as Record<string, Image>;
    const conf = path.join(root, "etc/containers/registries.conf.d/50-regcache-mirror.conf");
    expect(readFileSync(conf, "utf8")).toContain(`location = "${MIRROR_NAME}:${mirrorPort}/${quay.replace(":", "_")}"`);
    const certDir = path.join(root, "etc/containers/certs.d", `${MIRROR_NAME}:${mirrorPort}`);
    const dest = env.path("skopeo-mirror");
    const args = ["--registries-conf", conf, "--insecure-policy", "copy", "--retry-times", "0", "--src-no-creds", "--src-cert-dir", certDir, `docker://${viaSkopeo!.ref}`, `oci:${dest}:latest`];
    const [command, ...rest] = [...withHostsFile(hostsFile), "skopeo", ...args];
    const result = await runTool(command!, rest, { ...process.env, HTTPS_PROXY: "", https_proxy: "" }, 120_000);
    expect(result.ok, result.stderr).toBe(true);
    await regcache.waitForLog((l) => l.msg === "request" && l.repository === "public/via-skopeo" && l.kind === "blob");
    const lines = regcache.logs.filter((l) => l.msg === "request" && l.repository === "public/via-skopeo");
    expect(lines.every((l) => l.mirror === "path" && l.host === "quay.test")).toBe(true);
    expect(await blobGetCounts(env.registry, blobsOf(viaSkopeo!))).toEqual(blobsOf(viaSkopeo!).map(() => 1));
  });

  it.skipIf(noDocker)("Docker Engine with the registry-mirrors node-setup.sh writes pulls a library/ image of the Docker-Hub-shaped registry through regcache", async () => {
    const { hub } = images as Record<string, Image>;
    await nodeSetup(["--runtime", "docker", "--mirror", `https://127.0.0.1:${mirrorPort}`]);
    const daemonConfig = JSON.parse(readFileSync(path.join(root, "etc/docker/daemon.json"), "utf8")) as Record<string, unknown>;
    expect(daemonConfig).toEqual({ "registry-mirrors": [`https://127.0.0.1:${mirrorPort}`] });
    const engine = new TestDockerEngine(env.path("dockerd"));
    try {
      await engine.start(undefined, { daemonConfig });
      const pull = await engine.pull("hello:1");
      expect(pull.ok, `${pull.stderr}\n${engine.output.slice(-2000)}`).toBe(true);
      expect((await engine.inspect("hello:1")).repoDigests).toEqual([`hello@${hub!.topDigest}`]);
    } finally {
      await engine.stop();
    }
    await regcache.waitForLog((l) => l.msg === "request" && l.repository === "library/hello" && l.kind === "blob");
    const lines = regcache.logs.filter((l) => l.msg === "request" && l.repository === "library/hello");
    expect(lines.every((l) => l.mirror === "default" && l.host === HUB)).toBe(true);
    // Docker was told "no auth" by the mirror's /v2/: regcache fetched Hub's anonymous token itself.
    expect(tokens.requests.some((r) => r.account === undefined && r.granted.includes("library/hello:pull"))).toBe(true);
    expect(await blobGetCounts(env.registry, blobsOf(hub!))).toEqual(blobsOf(hub!).map(() => 1));
  });

  it("fallback: with regcache stopped, and with its port blackholed, ctr pulls from the registry itself", async () => {
    const { stopped, blackholed } = images as Record<string, Image>;
    expectNoFaults();
    const proxyPort = regcache.port;
    await regcache.stop();
    const whileStopped = await ctrPull(containerd, stopped!.ref);
    expect(whileStopped.ok, whileStopped.stderr).toBe(true);
    expect(await blobGetCounts(open, blobsOf(stopped!))).toEqual(blobsOf(stopped!).map(() => 1));

    // A listener that accepts and never answers: a replica that hangs, or a port whose packets go nowhere.
    const held: Socket[] = [];
    const blackhole: Server = createServer((socket) => held.push(socket));
    await new Promise<void>((resolve) => blackhole.listen(mirrorPort, "127.0.0.1", resolve));
    try {
      const whileBlackholed = await ctrPull(containerd, blackholed!.ref);
      expect(whileBlackholed.ok, whileBlackholed.stderr).toBe(true);
      expect(held.length).toBeGreaterThan(0);
      expect(await blobGetCounts(open, blobsOf(blackholed!))).toEqual(blobsOf(blackholed!).map(() => 1));
    } finally {
      for (const socket of held) socket.destroy();
      await new Promise((resolve) => blackhole.close(resolve));
    }
    await regcache.start(proxyPort);
  });

  it("outage: with the registry stopped after a pull, a containerd that lacks the image pulls it through the mirror by digest and by tag (stale)", async () => {
    const { outage } = images as Record<string, Image>;
    expect((await ctrPull(containerd, outage!.ref)).ok).toBe(true);
    await open.stop();
    const fresh = new TestContainerd(env.path("containerd-3"));
    await fresh.start();
    try {
      const from = regcache.logs.length;
      const byDigest = await ctrPull(fresh, outage!.byDigest);
      expect(byDigest.ok, byDigest.stderr).toBe(true);
      expect((await fresh.contentDigests()).sort()).toEqual([...outage!.allDigests].sort());
      const byTag = await ctrPull(fresh, outage!.ref);
      expect(byTag.ok, byTag.stderr).toBe(true);
      await regcache.waitForLog((l) => l.msg === "request" && l.mirror === "ns" && l.repository === "team/outage" && l.kind === "tag" && l.cache === "STALE");
      expect(mirrorLines(from, (l) => l.repository === "team/outage" && l.kind === "blob").map((l) => l.cache)).toEqual(blobsOf(outage!).map(() => "HIT"));
      expectNoFaults();
    } finally {
      await fresh.stop();
      await open.start();
    }
  });

  /** curl to the mirror port, trusting regcache's CA, the mirror's name resolved to loopback. */
  async function curlMirror(pathAndQuery: string, extra: string[] = []): Promise<{ status: number; body: string }> {
    const url = `https://${MIRROR_NAME}:${mirrorPort}${pathAndQuery}`;
    const { stdout } = await exec("curl", ["-s", "--path-as-is", "--cacert", regcache.caFile, "--resolve", `${MIRROR_NAME}:${mirrorPort}:127.0.0.1`, "-w", "\n%{http_code}", ...extra, url]).catch((e: { stdout: string }) => e);
    const at = stdout.lastIndexOf("\n");
    return { status: Number(stdout.slice(at + 1)), body: stdout.slice(0, at) };
  }

  it("no credential or token reaches a log line: the mirror's and the proxy's request lines, debug lines included", () => {
    // Every token the token service issues starts with the same JWT header: {"typ":"JWT",...
    const jwtStart = Buffer.from('{"typ":"JWT"').toString("base64url").slice(0, 12);
    const secrets = ["s3cret-pass", Buffer.from(GOOD).toString("base64"), jwtStart];
    expect(tokens.requests.some((r) => r.status === 200)).toBe(true);
    // Alice's credentials and the tokens reached regcache on the mirror port: her private image was served there.
    expect(regcache.logs.some((l) => l.msg === "request" && l.mirror !== undefined && l.access === "confirmed")).toBe(true);
    expect(regcache.rawOutput.length).toBeGreaterThan(50);
    for (const line of regcache.rawOutput) {
      for (const secret of secrets) expect(line).not.toContain(secret);
      expect(line).not.toMatch(/Bearer [A-Za-z0-9._-]{20,}/);
    }
  });
});

describe.skipIf(missingTools("docker-registry", "curl").length > 0)("mirror mode: the mirror port itself (plain HTTP, the setup script, bad input)", () => {
  let env: TestEnvironment;
  let regcache: RegcacheProcess;
  let mirrorPort: number;
  let ca: string;

  beforeAll(async () => {
    env = new TestEnvironment("mirror-hostile");
    await env.start();
    mirrorPort = await freePort();
    regcache = env.regcache("hostile", ["--deny-private-addresses", "--allow-port", "443", "--allow-port", String(env.registry.port), "--resolve", `quay.test:${env.registry.port}=127.0.0.1:${env.registry.port}`, "--mirror-listen", `127.0.0.1:${mirrorPort}`, "--mirror-name", MIRROR_NAME]);
    await regcache.start();
    ca = readFileSync(regcache.caFile, "utf8");
  });
  afterAll(async () => env?.cleanup());

  async function ask(pathAndQuery: string, method = "GET"): Promise<{ status: number; code: string; message: string }> {
    const socket = await tlsDirect(mirrorPort, "127.0.0.1", MIRROR_NAME, ca);
    const [response] = await exchange(socket, [{ method, path: pathAndQuery, host: `${MIRROR_NAME}:${mirrorPort}` }]);
    const error = (JSON.parse(response!.body.toString()) as { errors?: { code: string; message: string }[] }).errors?.[0];
    return { status: response!.status, code: error?.code ?? "", message: error?.message ?? "" };
  }

  it("--mirror-plain-http serves the same API over plain HTTP", async () => {
    const image = await env.pushImage("team/plain", "1", [30_000]);
    const plainPort = await freePort();
    const port = env.registry.port;
    const plain = env.regcache("plain", ["--allow-port", String(port), "--resolve", `quay.test:${port}=127.0.0.1:${port}`, "--mirror-listen", `127.0.0.1:${plainPort}`, "--mirror-plain-http"]);
    await plain.start();
    const get = async (target: string): Promise<{ headers: string; body: Buffer }> => {
      const { stdout } = await exec("curl", ["-s", "-D", "-", "-o", env.path("plain-body"), "-H", `Accept: ${image.topMediaType}`, `http://127.0.0.1:${plainPort}${target}`]);
      return { headers: stdout, body: readFileSync(env.path("plain-body")) };
    };
    const manifest = await get(`/v2/team/plain/manifests/1?ns=quay.test:${port}`);
    expect(manifest.headers).toMatch(/^HTTP\/1\.1 200 /);
    expect(manifest.headers.toLowerCase()).toContain(`docker-content-digest: ${image.topDigest}`);
    const layer = image.layerDigests[0]!;
    const blob = await get(`/v2/quay.test:${port}/team/plain/blobs/${layer}`);
    expect(blob.headers).toMatch(/^HTTP\/1\.1 200 /);
    expect(`sha256:${createHash("sha256").update(blob.body).digest("hex")}`).toBe(layer);
    await plain.stop();
  });

  it("GET /setup/node.sh names the mirror too, so that --mode mirror needs no more arguments", async () => {
    const script = (await exec("curl", ["-sf", `${regcache.proxyUrl}/setup/node.sh`])).stdout;
    expect(script).toContain(`DEFAULT_MIRROR='https://${MIRROR_NAME}:${mirrorPort}'`);
    const root = env.path("setup-root");
    await exec("sh", ["-c", `curl -sf ${regcache.proxyUrl}/setup/node.sh | sh -s -- --root ${root} --mode mirror`]);
    expect(readFileSync(path.join(root, "etc/containerd/certs.d/_default/hosts.toml"), "utf8")).toContain(`[host."https://${MIRROR_NAME}:${mirrorPort}"]`);
    expect(readFileSync(path.join(root, "etc/containerd/certs.d/_default/regcache-ca.crt"), "utf8").trim()).toBe(ca.trim());
  });

  it("answers each with a registry error, and keeps serving", async () => {
    const port = env.registry.port;
    // The upstream named by ns or path goes through the proxy's host policies.
    expect(await ask(`/v2/app/manifests/1?ns=127.0.0.1:${port}`)).toMatchObject({ status: 403, code: "DENIED" });
    expect(await ask(`/v2/127.0.0.1:${port}/app/manifests/1`)).toMatchObject({ status: 403, code: "DENIED" });
    // A name that resolves to loopback is refused where it is dialled (a --resolve rule is the operator's, and trusted).
    expect(await ask(`/v2/app/manifests/1?ns=localhost:${port}`)).toMatchObject({ status: 403, code: "DENIED" });
    expect(await ask(`/v2/app/blobs/sha256:${"b".repeat(64)}?ns=localhost:${port}`)).toMatchObject({ status: 403, code: "DENIED" });
    expect(await ask("/v2/app/manifests/1?ns=quay.test:8443")).toMatchObject({ status: 403, code: "DENIED", message: "port 8443 is not allowed (--allow-port)" });
    expect(await ask("/v2/app/blobs/sha256:" + "a".repeat(64) + "?ns=no-such-registry.invalid")).toMatchObject({ status: 502, code: "UNAVAILABLE" });
    // Garbage.
    expect(await ask("/")).toMatchObject({ status: 404, code: "UNSUPPORTED" });
    expect(await ask("/etc/passwd")).toMatchObject({ status: 404, code: "UNSUPPORTED" });
    expect(await ask("/v2/../../etc/passwd")).toMatchObject({ status: 400, code: "NAME_INVALID" });
    expect(await ask("/v2/%2e%2e/app/manifests/1")).toMatchObject({ status: 400, code: "NAME_INVALID" });
    expect(await ask("/v2/app/manifests/1?ns=quay.io&ns=ghcr.io")).toMatchObject({ status: 400, code: "NAME_INVALID" });
    expect(await ask("/v2/app/manifests/1?ns=%00")).toMatchObject({ status: 400, code: "NAME_INVALID" });
    expect(await ask("/v2/Bad_Host:x/app/manifests/1")).toMatchObject({ status: 400, code: "NAME_INVALID" });
    expect(await ask(`/v2/app/manifests/${"x".repeat(5000)}`)).toMatchObject({ status: 414, code: "NAME_INVALID" });
    expect(await ask("/v2/app/blobs/uploads/", "POST")).toMatchObject({ status: 405, code: "UNSUPPORTED" });
    expect(await ask("/v2/app/manifests/1", "DELETE")).toMatchObject({ status: 405, code: "UNSUPPORTED" });
    // Plain HTTP to the TLS port, and bytes that are neither.
    const plain = await exec("curl", ["-s", "-w", "\n%{http_code}", `http://127.0.0.1:${mirrorPort}/v2/`]);
    expect(plain.stdout).toMatch(/"code":"UNSUPPORTED".*use https:\/\/.*\n400$/s);
    const garbage = await new Promise<string>((resolve) => {
      const socket = connect(mirrorPort, "127.0.0.1");
      let got = "";
      socket.on("data", (d: Buffer) => (got += d.toString()));
      socket.on("close", () => resolve(got));
      socket.on("error", () => resolve(got));
      socket.write(Buffer.from([0x00, 0xff, 0x13, 0x37, 0x0d, 0x0a]));
    });
    expect(garbage).toMatch(/^HTTP\/1\.1 400 /);
    // Still serving: its own /v2/, and the proxy port's health.
    expect(await ask("/v2/")).toMatchObject({ status: 200 });
    expect((await exec("curl", ["-sf", `${regcache.proxyUrl}/healthz`])).stdout).toContain("alive");
    expect(regcache.pid).toBeDefined();
    expect(regcache.logs.filter((l) => l.msg === "request handling failed" || l.level >= 50)).toEqual([]);
  });
});
