import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { gzipSync } from "node:zlib";

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os: string; architecture: string };
}

export interface BuiltImage {
  /** Digest of what the tag points to (a manifest, or an index for multi-platform images). */
  topDigest: string;
  topMediaType: string;
  /** Every blob and manifest digest of the image, index included. */
  allDigests: string[];
  layerDigests: string[];
  manifests: Descriptor[];
}

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip";

function sha256(data: Buffer): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

/** A one-file ustar archive: a valid layer that containerd can unpack. */
export function tarWithFile(name: string, content: Buffer): Buffer {
  const header = Buffer.alloc(512);
  header.write(name, 0, 100);
  header.write("0000644\0", 100);
  header.write("0000000\0", 108);
  header.write("0000000\0", 116);
  header.write(`${content.length.toString(8).padStart(11, "0")}\0`, 124);
  header.write("00000000000\0", 136);
  header.write("        ", 148);
  header.write("0", 156);
  header.write("ustar\0", 257);
  header.write("00", 263);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148);
  const padding = Buffer.alloc((512 - (content.length % 512)) % 512);
  return Buffer.concat([header, content, padding, Buffer.alloc(1024)]);
}

class LayoutWriter {
  readonly blobs = new Map<string, Buffer>();

  constructor(readonly dir: string) {
    mkdirSync(path.join(dir, "blobs", "sha256"), { recursive: true });
  }

  add(data: Buffer, mediaType: string): Descriptor {
    const digest = sha256(data);
    writeFileSync(path.join(this.dir, "blobs", "sha256", digest.slice(7)), data);
    this.blobs.set(digest, data);
    return { mediaType, digest, size: data.length };
  }
}

function buildPlatformImage(layout: LayoutWriter, layerSizes: number[], os: string, architecture: string): { manifest: Descriptor; layers: Descriptor[]; config: Descriptor } {
  const layers: Descriptor[] = [];
  const diffIds: string[] = [];
  for (const [i, size] of layerSizes.entries()) {
    const tar = tarWithFile(`data/layer-${i}-${randomBytes(4).toString("hex")}.bin`, randomBytes(size));
    diffIds.push(sha256(tar));
    layers.push(layout.add(gzipSync(tar, { level: 1 }), OCI_LAYER));
  }
  const config = layout.add(Buffer.from(JSON.stringify({ architecture, os, config: {}, rootfs: { type: "layers", diff_ids: diffIds } })), OCI_CONFIG);
  const manifest = layout.add(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers })), OCI_MANIFEST);
  return { manifest: { ...manifest, platform: { os, architecture } }, layers, config };
}

/**
 * Writes an OCI image layout at `dir` with random gzip layers: one platform, or a
 * two-platform index (linux/amd64 + linux/arm64) when `platforms` is 2.
 */
export function writeOciImage(dir: string, tag: string, layerSizes: number[], platforms: 1 | 2 = 1): BuiltImage {
  const layout = new LayoutWriter(dir);
  const archs = platforms === 2 ? ["amd64", "arm64"] : ["amd64"];
  const built = archs.map((arch) => buildPlatformImage(layout, layerSizes, "linux", arch));
  let top: Descriptor;
  if (platforms === 2) {
    top = layout.add(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: built.map((b) => b.manifest) })), OCI_INDEX);
  } else {
    top = built[0]!.manifest;
  }
  const { platform: _platform, ...topDescriptor } = top;
  writeFileSync(path.join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  writeFileSync(path.join(dir, "index.json"), JSON.stringify({ schemaVersion: 2, manifests: [{ ...topDescriptor, annotations: { "org.opencontainers.image.ref.name": tag } }] }));
  return {
    topDigest: top.digest,
    topMediaType: top.mediaType,
    allDigests: [...layout.blobs.keys()],
    layerDigests: built.flatMap((b) => b.layers.map((l) => l.digest)),
    manifests: built.map((b) => b.manifest),
  };
}
