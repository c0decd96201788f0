import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { corruptBlobsInLayout, layoutDigests, skopeoPush, type SkopeoResult } from "./harness/clients.js";
import { dockerArchiveFromLayout, pushedDigest, TestDockerEngine } from "./harness/docker-engine.js";
import { TestEnvironment } from "./harness/environment.js";
import { writeOciImage, type BuiltImage } from "./harness/oci-image.js";
import { waitFor } from "./harness/ports.js";
import type { LogLine, RegcacheProcess } from "./harness/regcache-process.js";
import { writeHtpasswd } from "./harness/registry.js";
import { dockerUnavailable, missingTools } from "./harness/tools.js";

const exec = promisify(execFile);
const missing = missingTools("docker-registry", "skopeo", "openssl", "curl");

const DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json";

function sha256(data: Buffer): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

/** The diff IDs an OCI layout's single-platform image declares in its config. */
function layoutDiffIds(layout: string, built: BuiltImage): string[] {
  const blob = (digest: string) => readFileSync(path.join(layout, "blobs", "sha256", digest.slice(7)), "utf8");
  const manifest = JSON.parse(blob(built.manifests[0]!.digest)) as { config: { digest: string } };
  return (JSON.parse(blob(manifest.config.digest)) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids;
}

describe.skipIf(missing.length > 0 || dockerUnavailable())("Docker Engine (Debian's docker.io) through regcache", () => {
  let env: TestEnvironment;
  let proxy: RegcacheProcess;
  let engine: TestDockerEngine;

  beforeAll(async () => {
    env = new TestEnvironment("docker");
    await env.start();
    proxy = env.regcache();
    await proxy.start();
    engine = new TestDockerEngine(env.path("dockerd"));
    await engine.start(proxy);
  });
  afterAll(async () => {
    await engine?.stop();
    await env?.cleanup();
  });

  /** A failed docker command's message, with what regcache and dockerd said last: a push failure is usually explained there. */
  function why(result: SkopeoResult): string {
    const died = proxy.rawOutput.some((l) => l.includes("TypeError")) ? "\nregcache printed a TypeError (see its output below)" : "";
    return `${result.stderr}${died}\n--- regcache (last lines) ---\n${proxy.rawOutput.slice(-15).join("\n")}\n--- dockerd (tail) ---\n${engine.output.slice(-3000)}`;
  }

  /** Waits for a request log line after `from` (an index into proxy.logs) matching `predicate`. */
  async function waitForRequestAfter(from: number, predicate: (l: LogLine) => boolean): Promise<LogLine> {
    let found: LogLine | undefined;
    await waitFor(() => (found = proxy.logs.slice(from).find((l) => l.msg === "request" && predicate(l))) !== undefined, 5_000, "a request log line");
    return found!;
  }

  /** The manifest the registry holds for repo:tag, fetched directly (not through regcache). */
  async function registryManifest(repo: string, tag: string): Promise<{ digest: string; layers: string[]; config: string }> {
    const url = `https://127.0.0.1:${env.registry.port}/v2/${repo}/manifests/${tag}`;
    const { stdout } = await exec("curl", ["-sf", "--noproxy", "*", "--cacert", env.pki.caCert, "-H", `Accept: ${DOCKER_MANIFEST}`, url], { encoding: "buffer" });
    const manifest = JSON.parse(stdout.toString()) as { config: { digest: string }; layers: { digest: string }[] };
    return { digest: sha256(stdout), layers: manifest.layers.map((l) => l.digest), config: manifest.config.digest };
  }

  it("docker push of a new image through regcache lands intact in the registry, and docker pull brings the same image back", async () => {
    const layout = env.path("push-layout");
    // Fresh random layers: the registry has none of them, so every blob is really uploaded.
    const built = writeOciImage(layout, "v1", [3_000_000, 2_000_000, 1_500_000]);
    const ref = "quay.test/team/pushed:v1";
    const archive = env.path("push.tar");
    await dockerArchiveFromLayout(layout, "v1", ref, archive);
    const load = await engine.load(archive);
    expect(load.ok, load.stderr).toBe(true);
    const diffIds = layoutDiffIds(layout, built);
    expect((await engine.inspect(ref)).diffIds).toEqual(diffIds);

    const before = proxy.logs.length;
    const push = await engine.push(ref);
    expect(push.ok, why(push)).toBe(true);
    // The upload went through regcache (not around it): it saw the manifest PUT and the registry's 201.
    await waitForRequestAfter(before, (l) => l.method === "PUT" && l.path === "/v2/team/pushed/manifests/v1" && l.status === 201);
    const digest = pushedDigest(push.stdout);
    expect(digest, push.stdout).toMatch(/^sha256:[0-9a-f]{64}$/);
    const stored = await registryManifest("team/pushed", "v1");
    expect(stored.digest).toBe(digest);
    expect(stored.layers).toHaveLength(3);

    const rmi = await engine.rmi(ref);
    expect(rmi.ok, rmi.stderr).toBe(true);
    await expect(engine.inspect(ref)).rejects.toThrow(/No such image/);
    const pull = await engine.pull(ref);
    expect(pull.ok, why(pull)).toBe(true);
    const pulled = await engine.inspect(ref);
    expect(pulled.repoDigests).toContain(`quay.test/team/pushed@${digest}`);
    expect(pulled.diffIds).toEqual(diffIds);

    // What Docker uploaded, read back straight from the registry, hashes to its names.
    const direct = env.path("push-readback");
    await exec("skopeo", ["--insecure-policy", "copy", "--src-cert-dir", env.pki.certDir, `docker://${env.registry.url}/team/pushed:v1`, `oci:${direct}:v1`], {
      env: { ...process.env, HTTPS_PROXY: "", https_proxy: "" },
      timeout: 120_000,
    });
    const check = corruptBlobsInLayout(direct);
    expect(check.corrupt).toEqual([]);
    expect(layoutDigests(direct)).toEqual(expect.arrayContaining([...stored.layers, stored.config]));
  });

  it("docker pull goes through regcache; after docker rmi, the same pull is served from the cache", async () => {
    const layout = env.path("pull-layout");
    const image = writeOciImage(layout, "1.0", [2_000_000, 1_000_000, 500_000]);
    await skopeoPush(layout, "1.0", env.registry.url, "team/pulled", env.pki.certDir);
    const ref = "quay.test/team/pulled:1.0";
    env.registry.clearLog();
    const first = await engine.pull(ref);
    expect(first.ok, why(first)).toBe(true);
    const info = await engine.inspect(ref);
    expect(info.repoDigests).toEqual([`quay.test/team/pulled@${image.topDigest}`]);
    expect(info.diffIds).toEqual(layoutDiffIds(layout, image));
    // The registry logs a request after its response: wait for the lines rather than race them.
    await waitFor(() => image.layerDigests.every((layer) => env.registry.blobGets(layer).length > 0), 5_000, "the registry's blob GET lines");
    for (const layer of image.layerDigests) expect(env.registry.blobGets(layer)).toHaveLength(1);

    const rmi = await engine.rmi(ref);
    expect(rmi.ok, rmi.stderr).toBe(true);
    await expect(engine.inspect(ref)).rejects.toThrow(/No such image/);
    env.registry.clearLog();
    const before = proxy.logs.length;
    const second = await engine.pull(ref);
    expect(second.ok, why(second)).toBe(true);
    expect((await engine.inspect(ref)).repoDigests).toEqual(info.repoDigests);
    for (const layer of image.layerDigests) {
      await waitForRequestAfter(before, (l) => l.kind === "blob" && l.cache === "HIT" && String(l.path).endsWith(layer));
    }
    expect(env.registry.blobGets()).toEqual([]);
  });

  it("docker push into another repository, with every blob cached from the first, lands intact", async () => {
    const sourceLayout = env.path("copy-source");
    writeOciImage(sourceLayout, "1.0", [1_500_000, 700_000]);
    await skopeoPush(sourceLayout, "1.0", env.registry.url, "team/source", env.pki.certDir);
    // A pull from team/copy first makes regcache know team/copy as public: the source's blobs,
    // cached by the pull below, must still not appear there before they are pushed.
    const earlierLayout = env.path("copy-earlier");
    writeOciImage(earlierLayout, "0.9", [300_000]);
    await skopeoPush(earlierLayout, "0.9", env.registry.url, "team/copy", env.pki.certDir);
    const earlier = await engine.pull("quay.test/team/copy:0.9");
    expect(earlier.ok, why(earlier)).toBe(true);
    const source = "quay.test/team/source:1.0";
    expect((await engine.pull(source)).ok).toBe(true);
    expect((await engine.tag(source, "quay.test/team/copy:1.0")).ok).toBe(true);
    const push = await engine.push("quay.test/team/copy:1.0");
    expect(push.ok, why(push)).toBe(true);
    const direct = env.path("copy-direct");
    await exec("skopeo", ["--insecure-policy", "copy", "--src-cert-dir", env.pki.certDir, `docker://${env.registry.url}/team/copy:1.0`, `oci:${direct}:1.0`], {
      env: { ...process.env, HTTPS_PROXY: "", https_proxy: "" },
    });
    expect(corruptBlobsInLayout(direct).corrupt).toEqual([]);
    expect(pushedDigest(push.stdout)).toBe((await engine.inspect(source)).repoDigests[0]!.split("@")[1]);
  });

  it("docker pull of a tag the registry does not have fails with the registry's answer", async () => {
    const result = await engine.pull("quay.test/team/pulled:no-such-tag");
    expect(result.ok).toBe(false);
    expect(result.stderr).toContain("manifest for quay.test/team/pulled:no-such-tag not found: manifest unknown");
  });
});

describe.skipIf(missing.length > 0 || missingTools("htpasswd").length > 0 || dockerUnavailable())("Docker Engine with a private registry through regcache", () => {
  const GOOD = "alice:s3cret-pass";
  let htpasswdDir: string;
  let env: TestEnvironment;
  let proxy: RegcacheProcess;
  let engine: TestDockerEngine;

  beforeAll(async () => {
    // The registry's htpasswd file must exist before the environment (and its registry) is made.
    htpasswdDir = mkdtempSync(path.join(tmpdir(), "regcache-docker-htpasswd-"));
    writeHtpasswd(path.join(htpasswdDir, "htpasswd"), { alice: "s3cret-pass" });
    env = new TestEnvironment("docker-private", { htpasswdFile: path.join(htpasswdDir, "htpasswd") });
    await env.start();
    proxy = env.regcache();
    await proxy.start();
    engine = new TestDockerEngine(env.path("dockerd"));
    await engine.start(proxy);
  });
  afterAll(async () => {
    await engine?.stop();
    await env?.cleanup();
    if (htpasswdDir) rmSync(htpasswdDir, { recursive: true, force: true });
  });

  it("docker login + push, then pull: works with the login, fails without it even once regcache holds the image", async () => {
    const layout = env.path("private-layout");
    writeOciImage(layout, "1", [1_000_000, 500_000]);
    const ref = "quay.test/corp/secret:1";
    await dockerArchiveFromLayout(layout, "1", ref, env.path("private.tar"));
    expect((await engine.load(env.path("private.tar"))).ok).toBe(true);
    const anonymousPush = await engine.push(ref);
    expect(anonymousPush.ok).toBe(false);
    expect(anonymousPush.stderr).toContain("no basic auth credentials");

    const push = await engine.push(ref, GOOD);
    expect(push.ok, push.stderr).toBe(true);
    const digest = pushedDigest(push.stdout);
    expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);

    expect((await engine.rmi(ref)).ok).toBe(true);
    const pull = await engine.pull(ref, GOOD);
    expect(pull.ok, pull.stderr).toBe(true);
    expect((await engine.inspect(ref)).repoDigests).toEqual([`quay.test/corp/secret@${digest}`]);

    // regcache now holds the manifest and every blob; without the login Docker must still be refused.
    expect((await engine.docker(["logout", "quay.test"])).ok).toBe(true);
    expect((await engine.rmi(ref)).ok).toBe(true);
    const anonymousPull = await engine.pull(ref);
    expect(anonymousPull.ok).toBe(false);
    expect(anonymousPull.stderr).toContain("no basic auth credentials");
    await expect(engine.inspect(ref)).rejects.toThrow(/No such image/);
    const output = proxy.rawOutput.join("\n");
    expect(output).not.toContain("s3cret-pass");
    expect(output).not.toContain(Buffer.from(GOOD).toString("base64"));
  });
});
