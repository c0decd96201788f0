import path from "node:path";
import type { Digest } from "../oci/digest.js";

/**
 * Layout of the data directory:
 *
 *   <data>/
 *   ├── lock                      symbolic link to the pid of the process that owns this directory
 *   ├── index.sqlite              keyv + @keyv/sqlite: blob rows, tag answers, access verdicts
 *   ├── instance-secret           key of credential HMACs (mode 0600)
 *   ├── metric-hosts.json         the registries with a host label of their own in /metrics
 *   ├── tmp/                      downloads in progress (same filesystem, so rename is atomic)
 *   ├── quarantine/               the last few files found not to match their digest, for inspection
 *   └── blobs/
 *       └── sha256/
 *           └── ab/
 *               └── abcdef...     one file per digest, shared by every repository and registry
 *
 * Only a validated hex digest (see registry/digest.ts) ever becomes part of a path.
 */
export class DataPaths {
  readonly root: string;
  readonly tmpDir: string;
  readonly quarantineDir: string;
  readonly blobsDir: string;
  readonly indexFile: string;
  readonly lockFile: string;
  readonly secretFile: string;
  readonly metricHostsFile: string;

  constructor(root: string) {
    this.root = path.resolve(root);
    this.tmpDir = path.join(this.root, "tmp");
    this.quarantineDir = path.join(this.root, "quarantine");
    this.blobsDir = path.join(this.root, "blobs");
    this.indexFile = path.join(this.root, "index.sqlite");
    this.lockFile = path.join(this.root, "lock");
    this.secretFile = path.join(this.root, "instance-secret");
    this.metricHostsFile = path.join(this.root, "metric-hosts.json");
  }

  blobFile(digest: Digest): string {
    return path.join(this.blobsDir, digest.algorithm, digest.hex.slice(0, 2), digest.hex);
  }
}
