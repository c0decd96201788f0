import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createHash, randomBytes } from "node:crypto";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  corruptBlobsInLayout,
  curlThrough,
  layoutDigests,
  layoutTopDigest,
  skopeoPull,
  skopeoPullDirect,
  skopeoPushThrough,
  type SkopeoResult,
} from "./harness/clients.js";
import { REGISTRY_HOST, TestEnvironment } from "./harness/environment.js";
import { tarWithFile, writeOciImage, type BuiltImage } from "./harness/oci-image.js";
import { waitFor } from "./harness/ports.js";
import type { LogLine, RegcacheProcess } from "./harness/regcache-process.js";
import type { AccessLogEntry } from "./harness/registry.js";
import { isRoot, missingTools } from "./harness/tools.js";

// As root, skopeo's blob info cache is swapped for a private one inside `unshare --mount` (see skopeoPushThrough).
const missing = missingTools("docker-registry", "skopeo", "openssl", "curl", ...(isRoot() ? ["unshare", "mount"] : []));

const MB = 1024 * 1024;
const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";

function sha256(data: Buffer): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

function sortedCopy(values: string[]): string[] {
  return [...values].sort();
}

/**
 * An image on top of `base` (a single-platform layout): the same layer blobs, byte for byte,
 * plus one fresh random layer, with its own config and manifest.
 */
function writeDerivedImage(dir: string, tag: string, baseLayout: string, base: BuiltImage, extraLayerSize: number): BuiltImage {
  const blobDir = path.join(dir, "blobs", "sha256");
  mkdirSync(blobDir, { recursive: true });
  const readBase = (digest: string) => readFileSync(path.join(baseLayout, "blobs", "sha256", digest.slice(7)));
  const add = (data: Buffer, mediaType: string) => {
    const digest = sha256(data);
    writeFileSync(path.join(blobDir, digest.slice(7)), data);
    return { mediaType, digest, size: data.length };
  };
  const baseManifest = JSON.parse(readBase(base.topDigest).toString()) as { config: { digest: string }; layers: { mediaType: string; digest: string; size: number }[] };
  const baseConfig = JSON.parse(readBase(baseManifest.config.digest).toString()) as { architecture: string; os: string; rootfs: { diff_ids: string[] } };
  for (const layer of baseManifest.layers) copyFileSync(path.join(baseLayout, "blobs", "sha256", layer.digest.slice(7)), path.join(blobDir, layer.digest.slice(7)));
  const tar = tarWithFile(`data/derived-${randomBytes(4).toString("hex")}.bin`, randomBytes(extraLayerSize));
  const extra = add(gzipSync(tar, { level: 1 }), baseManifest.layers[0]!.mediaType);
  const layers = [...baseManifest.layers, extra];
  const config = add(
    Buffer.from(JSON.stringify({ architecture: baseConfig.architecture, os: baseConfig.os, config: {}, rootfs: { type: "layers", diff_ids: [...baseConfig.rootfs.diff_ids, sha256(tar)] } })),
    "application/vnd.oci.image.config.v1+json",
  );
  const manifest = add(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers })), OCI_MANIFEST);
  writeFileSync(path.join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  writeFileSync(path.join(dir, "index.json"), JSON.stringify({ schemaVersion: 2, manifests: [{ ...manifest, annotations: { "org.opencontainers.image.ref.name": tag } }] }));
  return {
    topDigest: manifest.digest,
    topMediaType: OCI_MANIFEST,
    allDigests: [...layers.map((l) => l.digest), config.digest, manifest.digest],
    layerDigests: layers.map((l) => l.digest),
    manifests: [manifest],
  };
}

/** The upload requests (POST, PATCH, PUT) for one repository, as [method, path without query, status]. */
function uploadShape(entries: AccessLogEntry[], repo: string): [string, string, number][] {
  return entries
    .filter((e) => ["POST", "PATCH", "PUT"].includes(e.method) && e.path.startsWith(`/v2/${repo}/`))
    .map((e): [string, string, number] => [e.method, e.path.split("?")[0]!, e.status])
    .sort((a, b) => a.join(" ").localeCompare(b.join(" ")));
}

/** regcache's request lines in the registry access log's terms. */
function asAccessLog(lines: LogLine[]): AccessLogEntry[] {
  return lines.map((l) => ({ method: String(l.method), path: String(l.path), status: Number(l.status) }));
}

/** The digest a blob upload was completed with (PUT .../blobs/uploads/<id>?digest=...). */
function completedDigest(entry: AccessLogEntry): string | null {
  return new URL(entry.path, "https://x").searchParams.get("digest");
}

describe.skipIf(missing.length > 0)("pushes with skopeo through regcache", () => {
  let env: TestEnvironment;
  let proxy: RegcacheProcess;
  /** skopeo's blob info cache for this file's pushes: neither polluted by nor polluting other runs. */
  let blobInfoCache: string;

  beforeAll(async () => {
    env = new TestEnvironment("push");
    await env.start();
    proxy = env.regcache();
    await proxy.start();
    blobInfoCache = env.path("blob-info-cache");
  });
  afterAll(async () => {
    await env?.cleanup();
  });

  /** A failed skopeo's message, with what regcache said last: a push failure is usually explained there. */
  function why(result: SkopeoResult): string {
    return `${result.stderr}\n--- regcache (last lines) ---\n${proxy.rawOutput.slice(-20).join("\n")}`;
  }

  /** Waits until both the registry and regcache have logged the manifest PUT that ends a push to `repo`. */
  async function pushLogged(repo: string, tag: string, regcacheMark: number): Promise<{ registry: AccessLogEntry[]; regcache: LogLine[] }> {
    const manifestPut = (e: AccessLogEntry) => e.method === "PUT" && e.path === `/v2/${repo}/manifests/${tag}`;
    const requests = () => proxy.logs.slice(regcacheMark).filter((l) => l.msg === "request" && l.host === REGISTRY_HOST);
    await waitFor(() => env.registry.accessLog.some(manifestPut) && asAccessLog(requests()).some(manifestPut), 5_000, `the manifest PUT for ${repo}:${tag} in both logs`);
    return { registry: env.registry.accessLog.filter((e) => e.path.startsWith(`/v2/${repo}/`)), regcache: requests().filter((l) => String(l.path).startsWith(`/v2/${repo}/`)) };
  }

  /** Every upload went through regcache, as it reached the registry, and regcache logged it as a bypass with its (empty) body. */
  function expectUploadsRelayed(logs: { registry: AccessLogEntry[]; regcache: LogLine[] }, repo: string): void {
    const writes = logs.registry.filter((e) => e.method === "PATCH" || e.method === "PUT");
    expect(writes.length).toBeGreaterThan(0);
    expect(writes.filter((e) => e.status < 200 || e.status > 299)).toEqual([]);
    expect(uploadShape(asAccessLog(logs.regcache), repo)).toEqual(uploadShape(logs.registry, repo));
    const relayed = logs.regcache.filter((l) => l.method === "PATCH" || l.method === "PUT");
    // distribution answers PATCH (202) and PUT (201) with Content-Length: 0.
    expect(relayed.map((l) => [l.method, l.status, l.cache, l.bytes, l.completed])).toEqual(relayed.map((l) => [l.method, l.status, "BYPASS", 0, true]));
  }

  /** The pulled layout holds exactly `image`'s blobs, each hashing to its name, under the same top digest. */
  function expectSameImage(layout: string, image: BuiltImage): void {
    const check = corruptBlobsInLayout(layout);
    expect(check.corrupt).toEqual([]);
    expect(sortedCopy(layoutDigests(layout))).toEqual(sortedCopy(image.allDigests));
    expect(layoutTopDigest(layout)).toBe(image.topDigest);
  }

  it(
    "a ~350 MB image pushed through regcache lands intact: pulled back directly and through regcache, every blob checks out",
    async () => {
      const layout = env.path("big-layout");
      // Fresh random layers: neither the registry nor regcache has seen them, so every byte is uploaded.
      const image = writeOciImage(layout, "v1", [150 * MB, 120 * MB, 80 * MB]);
      const repo = "team/big";
      const mark = proxy.logs.length;
      const push = await skopeoPushThrough(proxy, layout, "v1", `${REGISTRY_HOST}/${repo}:v1`, { blobInfoCacheDir: blobInfoCache });
      expect(push.ok, why(push)).toBe(true);

      const logs = await pushLogged(repo, "v1", mark);
      expectUploadsRelayed(logs, repo);
      // Each blob (3 layers and the config) was uploaded and completed under its own digest.
      const completed = logs.registry.filter((e) => e.method === "PUT" && e.path.includes("/blobs/uploads/")).map(completedDigest);
      expect(sortedCopy(completed.map(String))).toEqual(sortedCopy(image.allDigests.filter((d) => d !== image.topDigest)));
      expect(logs.registry).toContainEqual({ method: "PUT", path: `/v2/${repo}/manifests/v1`, status: 201 });

      const direct = env.path("big-direct");
      const pulled = await skopeoPullDirect(`${env.registry.url}/${repo}:v1`, direct, env.pki.certDir);
      expect(pulled.ok, pulled.stderr).toBe(true);
      expectSameImage(direct, image);

      const through = env.path("big-through");
      const proxied = await skopeoPull(proxy, `${REGISTRY_HOST}/${repo}:v1`, through, { timeoutMs: 300_000 });
      expect(proxied.ok, why(proxied)).toBe(true);
      expectSameImage(through, image);
    },
    300_000,
  );

  it("a two-platform index pushed with --all through regcache comes back whole, index digest included, directly and through regcache", async () => {
    const layout = env.path("multi-layout");
    const image = writeOciImage(layout, "2.0", [3 * MB, 1 * MB], 2);
    const repo = "team/multi";
    const mark = proxy.logs.length;
    const push = await skopeoPushThrough(proxy, layout, "2.0", `${REGISTRY_HOST}/${repo}:2.0`, { all: true, blobInfoCacheDir: blobInfoCache });
    expect(push.ok, why(push)).toBe(true);

    const logs = await pushLogged(repo, "2.0", mark);
    expectUploadsRelayed(logs, repo);
    // Both platform manifests by digest, then the index under the tag.
    for (const manifest of image.manifests) expect(logs.registry).toContainEqual({ method: "PUT", path: `/v2/${repo}/manifests/${manifest.digest}`, status: 201 });

    const direct = env.path("multi-direct");
    const pulled = await skopeoPullDirect(`${env.registry.url}/${repo}:2.0`, direct, env.pki.certDir, { all: true });
    expect(pulled.ok, pulled.stderr).toBe(true);
    expectSameImage(direct, image);

    const through = env.path("multi-through");
    const proxied = await skopeoPull(proxy, `${REGISTRY_HOST}/${repo}:2.0`, through, { all: true });
    expect(proxied.ok, why(proxied)).toBe(true);
    expectSameImage(through, image);
  });

  it("an image sharing another repository's layers is pushed through regcache by cross-repository mounts, and pulls back whole", async () => {
    const baseLayout = env.path("base-layout");
    const base = writeOciImage(baseLayout, "1", [6 * MB, 2 * MB]);
    const pushBase = await skopeoPushThrough(proxy, baseLayout, "1", `${REGISTRY_HOST}/team/base:1`, { blobInfoCacheDir: blobInfoCache });
    expect(pushBase.ok, why(pushBase)).toBe(true);

    const derivedLayout = env.path("derived-layout");
    const derived = writeDerivedImage(derivedLayout, "1", baseLayout, base, 1 * MB);
    const mark = proxy.logs.length;
    const pushDerived = await skopeoPushThrough(proxy, derivedLayout, "1", `${REGISTRY_HOST}/team/derived:1`, { blobInfoCacheDir: blobInfoCache });
    expect(pushDerived.ok, why(pushDerived)).toBe(true);

    const logs = await pushLogged("team/derived", "1", mark);
    expectUploadsRelayed(logs, "team/derived");
    // skopeo learnt from its blob info cache that base's layers are in team/base on the same registry, and mounted them.
    const mounts = logs.registry
      .filter((e) => e.method === "POST" && e.path.startsWith("/v2/team/derived/blobs/uploads/"))
      .map((e) => ({ params: new URL(e.path, "https://x").searchParams, status: e.status }))
      .filter((m) => m.params.has("mount"))
      .map((m) => [m.params.get("mount"), m.params.get("from"), m.status]);
    expect(sortedCopy(mounts.map((m) => m.join(" ")))).toEqual(sortedCopy(base.layerDigests.map((d) => `${d} team/base 201`)));
    // The mounts went through regcache too, and were answered as the registry answered them.
    const relayedMounts = logs.regcache.filter((l) => l.method === "POST" && String(l.path).includes("mount="));
    expect(relayedMounts.map((l) => [l.status, l.cache])).toEqual(base.layerDigests.map(() => [201, "BYPASS"]));
    // Only what was new was uploaded: the extra layer and the config.
    const completed = logs.registry.filter((e) => e.method === "PUT" && e.path.includes("/blobs/uploads/")).map(completedDigest);
    const fresh = derived.allDigests.filter((d) => d !== derived.topDigest && !base.layerDigests.includes(d));
    expect(sortedCopy(completed.map(String))).toEqual(sortedCopy(fresh));

    const direct = env.path("derived-direct");
    const pulled = await skopeoPullDirect(`${env.registry.url}/team/derived:1`, direct, env.pki.certDir);
    expect(pulled.ok, pulled.stderr).toBe(true);
    expectSameImage(direct, derived);
  });

  it("a manifest PUT the registry refuses reaches the client with the registry's error body, and regcache logs that body's size", async () => {
    const unknownLayer = sha256(randomBytes(64));
    const config = { mediaType: "application/vnd.oci.image.config.v1+json", digest: sha256(Buffer.from("{}")), size: 2 };
    const manifest = JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: unknownLayer, size: 64 }] });
    const mark = proxy.logs.length;
    const result = await curlThrough(proxy, `https://${REGISTRY_HOST}/v2/team/refused/manifests/v1`, ["-X", "PUT", "-H", `Content-Type: ${OCI_MANIFEST}`, "--data-binary", manifest]);
    expect(result.status, result.body.toString()).toBe(400);
    const body = JSON.parse(result.body.toString()) as { errors: { code: string }[] };
    expect(body.errors.map((e) => e.code)).toContain("MANIFEST_BLOB_UNKNOWN");
    let line: LogLine | undefined;
    await waitFor(() => (line = proxy.logs.slice(mark).find((l) => l.msg === "request" && l.method === "PUT" && l.path === "/v2/team/refused/manifests/v1")) !== undefined, 5_000, "the PUT's request line");
    expect(line).toMatchObject({ status: 400, cache: "BYPASS", bytes: result.body.length, completed: true });
    expect(result.body.length).toBeGreaterThan(0);
  });
});
