import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { waitFor } from "./ports.js";
import { IN_CI, isRoot, missingTools } from "./tools.js";

const SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), "eio-fs.py");
/** Debian's python3, where Debian's python3-fusepy is installed (another python3 may be first on PATH). */
const PYTHON = "/usr/bin/python3";

/** FUSE needs root here, /dev/fuse, fusermount, and Debian's python3-fusepy. */
export function eioFsUnavailable(): boolean {
  const missing = missingTools("fusermount", PYTHON);
  if (missing.length > 0) return true;
  let fusepy = true;
  try {
    execFileSync(PYTHON, ["-c", "import fusepy"], { stdio: "ignore" });
  } catch {
    fusepy = false;
  }
  const usable = isRoot() && existsSync("/dev/fuse") && fusepy;
  if (!usable && IN_CI) throw new Error("CI=true but FUSE cannot be used (root, /dev/fuse and python3-fusepy are needed): the EIO tests cannot run");
  return !usable;
}

/**
 * A directory whose writes fail with EIO on demand: a pass-through FUSE filesystem (eio-fs.py)
 * over a backing directory. Reads always succeed, as on a disk whose writes fail first.
 */
export class EioFs {
  private child: ChildProcess | undefined;
  private readonly flag: string;
  readonly backing: string;

  constructor(readonly mountPoint: string) {
    this.backing = `${mountPoint}.backing`;
    this.flag = `${mountPoint}.fail-writes`;
  }

  async mount(): Promise<void> {
    mkdirSync(this.mountPoint, { recursive: true });
    mkdirSync(this.backing, { recursive: true });
    this.child = spawn(PYTHON, [SCRIPT, this.backing, this.mountPoint, this.flag], { stdio: "ignore" });
    await waitFor(() => execFileSync("mount").toString().includes(` ${this.mountPoint} `), 10_000, "the FUSE filesystem to mount");
  }

  /** From now on every write fails with EIO. */
  failWrites(): void {
    writeFileSync(this.flag, "");
  }

  healWrites(): void {
    rmSync(this.flag, { force: true });
  }

  unmount(): void {
    try {
      execFileSync("fusermount", ["-u", "-z", this.mountPoint], { stdio: "ignore" });
    } catch {
      // not mounted
    }
    this.child?.kill();
  }
}
