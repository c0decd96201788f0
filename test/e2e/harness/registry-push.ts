import { createHash, randomBytes } from "node:crypto";
import { exchange, tlsDirect, type RawResponse } from "./raw-http.js";

export const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
export const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
export const DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json";

/** Where to push: a registry on 127.0.0.1, trusted through `ca`, with an Authorization header when it wants one. */
export interface PushTarget {
  port: number;
  host: string;
  ca: string;
  authorization?: string;
}

export interface Pushed {
  digest: string;
  bytes: Buffer;
}

/** The manifests of one repository's test content: the same set in every registry. */
export interface TestContent {
  layer: Pushed;
  config: Pushed;
  dockerConfig: Pushed;
  /** An OCI image manifest that declares its mediaType. */
  oci: Pushed;
  /** A Docker schema 2 manifest (declares its mediaType). */
  docker: Pushed;
  /** An OCI index naming `oci`. */
  index: Pushed;
  /** A manifest that declares no mediaType: registries label it as they will. */
  undeclared: Pushed;
}

export function sha256(bytes: Buffer): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

function pushed(bytes: Buffer): Pushed {
  return { digest: sha256(bytes), bytes };
}

/**
 * Content for the differential suites, small so that hundreds of requests stay cheap: one layer
 * (random bytes: registries do not unpack layers), two configs, and four manifests over them.
 */
export function buildTestContent(layerSize = 5_000): TestContent {
  const layer = pushed(randomBytes(layerSize));
  const config = pushed(Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [sha256(randomBytes(8))] } })));
  const dockerConfig = pushed(Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", created: new Date(0).toISOString(), rootfs: { type: "layers", diff_ids: [sha256(randomBytes(8))] } })));
  const descriptor = (mediaType: string, p: Pushed) => ({ mediaType, digest: p.digest, size: p.bytes.length });
  const ociLayers = [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", layer)];
  const oci = pushed(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: descriptor("application/vnd.oci.image.config.v1+json", config), layers: ociLayers })));
  const docker = pushed(
    Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: DOCKER_MANIFEST, config: descriptor("application/vnd.docker.container.image.v1+json", dockerConfig), layers: [descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", layer)] })),
  );
  const index = pushed(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [{ ...descriptor(OCI_MANIFEST, oci), platform: { os: "linux", architecture: "amd64" } }] })));
  // The same image as `oci`, without the top-level mediaType (the OCI image spec makes it optional).
  const undeclared = pushed(Buffer.from(JSON.stringify({ schemaVersion: 2, config: descriptor("application/vnd.oci.image.config.v1+json", config), layers: ociLayers })));
  return { layer, config, dockerConfig, oci, docker, index, undeclared };
}

async function send(target: PushTarget, method: string, path: string, headers: [string, string][], body?: Buffer): Promise<RawResponse> {
  const socket = await tlsDirect(target.port, "127.0.0.1", "localhost", target.ca);
  const auth: [string, string][] = target.authorization ? [["Authorization", target.authorization]] : [];
  const [response] = await exchange(socket, [{ method, path, host: target.host, headers: [...auth, ...headers], body }]);
  return response!;
}

/** A monolithic blob upload (distribution's POST, then PUT with the digest). */
export async function pushBlob(target: PushTarget, repository: string, blob: Pushed): Promise<void> {
  const started = await send(target, "POST", `/v2/${repository}/blobs/uploads/`, [["Content-Length", "0"]]);
  if (started.status !== 202) throw new Error(`upload of ${blob.digest} to ${repository}: POST answered ${started.status} ${started.body.toString()}`);
  const location = new URL(started.headers.location!, `https://${target.host}`);
  location.searchParams.set("digest", blob.digest);
  const done = await send(target, "PUT", `${location.pathname}${location.search}`, [["Content-Type", "application/octet-stream"]], blob.bytes);
  if (done.status !== 201) throw new Error(`upload of ${blob.digest} to ${repository}: PUT answered ${done.status} ${done.body.toString()}`);
}

export async function pushManifest(target: PushTarget, repository: string, reference: string, mediaType: string, manifest: Pushed): Promise<void> {
  const put = await send(target, "PUT", `/v2/${repository}/manifests/${reference}`, [["Content-Type", mediaType]], manifest.bytes);
  if (put.status !== 201) throw new Error(`PUT of ${repository}:${reference} answered ${put.status} ${put.body.toString()}`);
}

/** Pushes `content` into `repository`, its manifests under the tags oci, docker, index and undeclared. */
export async function pushTestContent(target: PushTarget, repository: string, content: TestContent): Promise<void> {
  for (const blob of [content.layer, content.config, content.dockerConfig]) await pushBlob(target, repository, blob);
  await pushManifest(target, repository, "oci", OCI_MANIFEST, content.oci);
  await pushManifest(target, repository, "docker", DOCKER_MANIFEST, content.docker);
  await pushManifest(target, repository, "index", OCI_INDEX, content.index);
  // distribution accepts a manifest without mediaType only as OCI (it refuses it as Docker's).
  await pushManifest(target, repository, "undeclared", OCI_MANIFEST, content.undeclared);
}
