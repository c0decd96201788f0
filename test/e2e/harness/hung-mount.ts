import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { stopProcess, waitFor } from "./ports.js";
import { IN_CI, isRoot, missingTools } from "./tools.js";

/**
 * A mount whose filesystem stops answering, as a network mount does when its server is gone:
 * bindfs (FUSE) mirrors a directory, and once its daemon is stopped (SIGSTOP) every call into
 * the mount waits. Mounting FUSE needs root and /dev/fuse.
 */
export function hungMountUnavailable(): boolean {
  if (missingTools("bindfs", "fusermount").length > 0) return true;
  if (!isRoot() || !existsSync("/dev/fuse")) {
    if (IN_CI) throw new Error("CI=true but FUSE cannot be mounted here (needs root and /dev/fuse): the hung-mount test cannot run");
    return true;
  }
  return false;
}

export class HungMount {
  private daemon: ChildProcess | undefined;

  constructor(readonly dir: string) {}

  /** The mount point, once the filesystem has stopped answering. */
  get mountPoint(): string {
    return path.join(this.dir, "mnt");
  }

  async start(): Promise<void> {
    const source = path.join(this.dir, "source");
    mkdirSync(source, { recursive: true });
    mkdirSync(this.mountPoint, { recursive: true });
    this.daemon = spawn("bindfs", ["-f", source, this.mountPoint], { stdio: "ignore" });
    await waitFor(() => readFileSync("/proc/mounts", "utf8").includes(` ${this.mountPoint} fuse`), 10_000, "bindfs to mount");
    this.daemon.kill("SIGSTOP");
  }

  /** Lets the filesystem answer again, then unmounts it. */
  async stop(): Promise<void> {
    if (!this.daemon) return;
    this.daemon.kill("SIGCONT");
    try {
      execFileSync("fusermount", ["-u", "-z", this.mountPoint], { stdio: "ignore" });
    } catch {
      // Already gone with its daemon.
    }
    await stopProcess(this.daemon, "SIGTERM");
    this.daemon = undefined;
  }
}
