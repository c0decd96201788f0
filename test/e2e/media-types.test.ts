import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import type { ServerResponse } from "node:http";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ALLOWED_DIFFERENCES } from "./harness/allowed-differences.js";
import { curlThrough, skopeoPull, TestContainerd, type SkopeoResult } from "./harness/clients.js";
import { TestDockerEngine } from "./harness/docker-engine.js";
import { TestEnvironment } from "./harness/environment.js";
import { FakeUpstream } from "./harness/fake-upstream.js";
import { waitFor } from "./harness/ports.js";
import { writeOciImage } from "./harness/oci-image.js";
import type { RegcacheProcess } from "./harness/regcache-process.js";
import { DOCKER_MANIFEST, OCI_MANIFEST, pushBlob, pushManifest, sha256, type Pushed } from "./harness/registry-push.js";
import { dockerUnavailable, missingTools } from "./harness/tools.js";

const exec = promisify(execFile);
const missing = missingTools("docker-registry", "skopeo", "openssl", "curl");
const BOTH = `${OCI_MANIFEST}, ${DOCKER_MANIFEST}`;

interface Image {
  repo: string;
  tag: string;
  manifest: Pushed;
  /** quay.test/<repo>:<tag> */
  ref: string;
}

/**
 * One manifest, two registries that label it differently: quay.test (distribution) labels it
 * OCI; a registry that labels it the Docker way (bad.test), or text/plain (open.test), filled the
 * cache first. Pulls from quay.test with skopeo, ctr and Docker Engine must work cold, warm and
 * after a restart, each registry's clients getting that registry's type.
 */
describe.skipIf(missing.length > 0 || dockerUnavailable())("a manifest labelled differently by two registries", () => {
  let env: TestEnvironment;
  let proxy: RegcacheProcess;
  let containerd: TestContainerd;
  let engine: TestDockerEngine;
  let dockerLabel: FakeUpstream;
  let textLabel: FakeUpstream;
  /** Manifests the labelling registries serve, by digest; while `held` is set, the second half of a body waits for it (a joiner's test). */
  const served = new Map<string, Buffer>();
  let held: Promise<void> | undefined;
  /** Declares OCI; its first fill comes from bad.test, which labels it the Docker way. */
  let declared: Image;
  /** Declares no type (OCI image-spec allows it); first filled from bad.test, labelled the Docker way. */
  let undeclared: Image;
  /** Declares OCI; its first fill comes from open.test, labelled text/plain. */
  let textFirst: Image;

  /** A labelling registry: the manifests by digest, with `contentType`, nothing else. */
  const labelling = (contentType: string) =>
    new FakeUpstream(env.pki, (req, res: ServerResponse) => {
      const digest = /\/manifests\/(sha256:[0-9a-f]{64})$/.exec(req.url ?? "")?.[1];
      const bytes = digest && served.get(digest);
      if (req.url === "/v2/") return void res.writeHead(200, { "content-type": "application/json" }).end("{}");
      if (!bytes) return void res.writeHead(404, { "content-type": "application/json" }).end('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}');
      res.writeHead(200, { "content-type": contentType, "content-length": bytes.length, "docker-content-digest": digest });
      if (req.method === "HEAD") return void res.end();
      if (!held) return void res.end(bytes);
      res.write(bytes.subarray(0, bytes.length >> 1));
      void held.then(() => res.end(bytes.subarray(bytes.length >> 1)));
    });

  /** An image of real layers (clients unpack them) pushed by HTTP, its manifest without mediaType when `dropMediaType`. */
  async function pushImage(repo: string, tag: string, dropMediaType: boolean): Promise<Image> {
    const layout = env.path("layouts", repo.replace("/", "_"));
    const built = writeOciImage(layout, tag, [200_000]);
    const blob = (digest: string): Pushed => ({ digest, bytes: readFileSync(path.join(layout, "blobs", "sha256", digest.slice(7))) });
    const doc = JSON.parse(blob(built.topDigest).bytes.toString()) as { mediaType?: string; config: { digest: string }; layers: { digest: string }[] };
    const target = { port: env.registry.port, host: "quay.test", ca: readFileSync(env.pki.caCert, "utf8") };
    for (const digest of [doc.config.digest, ...doc.layers.map((l) => l.digest)]) await pushBlob(target, repo, blob(digest));
    if (dropMediaType) delete doc.mediaType;
    const bytes = dropMediaType ? Buffer.from(JSON.stringify(doc)) : blob(built.topDigest).bytes;
    const manifest = { digest: sha256(bytes), bytes };
    await pushManifest(target, repo, tag, OCI_MANIFEST, manifest);
    served.set(manifest.digest, bytes);
    return { repo, tag, manifest, ref: `quay.test/${repo}:${tag}` };
  }

  const manifestUrl = (host: string, image: Image) => `https://${host}/v2/${image.repo}/manifests/${image.manifest.digest}`;

  /** What a client of `host` is told the manifest is, through regcache. */
  async function servedType(host: string, image: Image, accept = BOTH): Promise<{ type: string | undefined; cache: string | undefined; status: number }> {
    const res = await curlThrough(proxy, manifestUrl(host, image), ["-H", `Accept: ${accept}`]);
    if (res.status === 200) expect(res.body.equals(image.manifest.bytes)).toBe(true);
    return { type: res.headers["content-type"], cache: res.headers["x-cache"], status: res.status };
  }

  const why = (r: SkopeoResult): string => `${r.stderr}\n--- regcache ---\n${proxy.rawOutput.slice(-10).join("\n")}`;

  /** skopeo, ctr and Docker Engine each pull every image from quay.test, as fresh nodes would. */
  async function pullWithEveryClient(phase: string): Promise<void> {
    for (const image of [declared, undeclared, textFirst]) {
      const skopeo = await skopeoPull(proxy, image.ref, env.path(`skopeo-${phase}-${image.tag}`));
      expect(skopeo.ok, `skopeo ${phase} ${image.ref}: ${why(skopeo)}`).toBe(true);
      const ctr = await containerd.pull(proxy, image.ref, { namespace: `${phase}-${image.tag}` });
      expect(ctr.ok, `ctr ${phase} ${image.ref}: ${why(ctr)}`).toBe(true);
      const docker = await engine.pull(image.ref);
      expect(docker.ok, `docker ${phase} ${image.ref}: ${why(docker)}`).toBe(true);
      expect((await engine.inspect(image.ref)).repoDigests).toEqual([`quay.test/${image.repo}@${image.manifest.digest}`]);
      expect((await engine.rmi(image.ref)).ok).toBe(true);
      // Each registry's clients are told its own type, from the cache.
      expect(await servedType("quay.test", image)).toEqual({ type: OCI_MANIFEST, cache: "HIT", status: 200 });
    }
    expect(await servedType("bad.test", undeclared)).toEqual({ type: DOCKER_MANIFEST, cache: "HIT", status: 200 });
    // A declared type is served wherever the manifest is cached, even where upstream labels it otherwise.
    expect(await servedType("bad.test", declared)).toEqual({ type: OCI_MANIFEST, cache: "HIT", status: 200 });
    expect(ALLOWED_DIFFERENCES.map((r) => r.id)).toContain("declared-media-type");
  }

  beforeAll(async () => {
    env = new TestEnvironment("media-types");
    await env.start();
    declared = await pushImage("team/declared", "v1", false);
    undeclared = await pushImage("team/undeclared", "v2", true);
    textFirst = await pushImage("team/text", "v3", false);
    dockerLabel = labelling(DOCKER_MANIFEST);
    textLabel = labelling("text/plain; charset=utf-8");
    await dockerLabel.start();
    await textLabel.start();
    proxy = env.regcache("proxy", [...dockerLabel.resolveArg("bad.test"), ...textLabel.resolveArg("open.test")]);
    await proxy.start();
    containerd = new TestContainerd(env.path("containerd"));
    await containerd.start();
    engine = new TestDockerEngine(env.path("dockerd"));
    await engine.start(proxy);
  });

  afterAll(async () => {
    await engine?.stop();
    await containerd?.stop();
    await dockerLabel?.stop();
    await textLabel?.stop();
    await env?.cleanup();
  });

  it("cold: after one registry labels a manifest the Docker way (or text/plain), pulls from the OCI-labelling one work with skopeo, ctr and Docker", async () => {
    for (const [host, image, type] of [["bad.test", declared, DOCKER_MANIFEST], ["bad.test", undeclared, DOCKER_MANIFEST], ["open.test", textFirst, "text/plain; charset=utf-8"]] as const) {
      // The first fill: its client gets the upstream's own answer.
      const first = await curlThrough(proxy, manifestUrl(host, image), ["-H", `Accept: ${DOCKER_MANIFEST}`]);
      expect([first.status, first.headers["content-type"], first.headers["x-cache"]]).toEqual([200, type, "MISS"]);
    }
    env.registry.clearLog();
    await pullWithEveryClient("cold");
  });

  it("warm: the same pulls come from the cache, no manifest or layer fetched again", async () => {
    env.registry.clearLog();
    await pullWithEveryClient("warm");
    expect(env.registry.accessLog.filter((e) => e.method === "GET" && (e.path.includes("/blobs/") || /manifests\/sha256:/.test(e.path)))).toEqual([]);
  });

  it("after a restart: the types per registry survive, and the pulls still work", async () => {
    const port = proxy.port;
    await proxy.stop();
    await proxy.start(port);
    env.registry.clearLog();
    await pullWithEveryClient("restart");
    expect(env.registry.accessLog.filter((e) => e.method === "GET" && e.path.includes("/blobs/"))).toEqual([]);
  });

  it("a client that joins a fill from another registry gets its own registry's type", async () => {
    const joined = await pushImage("team/joined", "v4", true);
    let release = (): void => undefined;
    held = new Promise<void>((resolve) => (release = resolve));
    try {
      const filler = curlThrough(proxy, manifestUrl("bad.test", joined), ["-H", `Accept: ${DOCKER_MANIFEST}`]);
      await waitFor(() => dockerLabel.requests.some((r) => r.method === "GET" && r.url.endsWith(joined.manifest.digest)), 10_000, "the fill to start");
      const joiner = servedType("quay.test", joined);
      // Both requests are being answered: the joiner has joined the held fill (it reaches it without I/O).
      await waitFor(async () => /^regcache_active_requests 2$/m.test((await exec("curl", ["-s", `${proxy.proxyUrl}/metrics`])).stdout), 10_000, "the joiner to arrive");
      release();
      expect((await filler).headers["content-type"]).toBe(DOCKER_MANIFEST);
      expect(await joiner).toEqual({ type: OCI_MANIFEST, cache: "COALESCED", status: 200 });
    } finally {
      release();
      held = undefined;
    }
  });
});
