import { execFileSync } from "node:child_process";
import { closeSync, mkdirSync, openSync, writeSync } from "node:fs";
import path from "node:path";
import { IN_CI, isRoot, missingTools } from "./tools.js";

/** A small tmpfs is how tests get a disk that really fills up; mounting one needs root. */
export function tmpfsUnavailable(): boolean {
  if (missingTools("mount", "umount").length > 0) return true;
  if (!isRoot()) {
    if (IN_CI) throw new Error("CI=true but not running as root: full-disk tests cannot mount a tmpfs");
    return true;
  }
  return false;
}

/** `readOnly`: a volume mounted read-only, which even root cannot write. */
export function mountTmpfs(dir: string, sizeBytes: number, readOnly = false): void {
  mkdirSync(dir, { recursive: true });
  execFileSync("mount", ["-t", "tmpfs", "-o", `${readOnly ? "ro," : ""}size=${sizeBytes}`, "tmpfs", dir]);
}

/** Lazy, so that a file a failed test left open never keeps the mount alive. */
export function unmountTmpfs(dir: string): void {
  execFileSync("umount", ["-l", dir]);
}

/** Writes a filler file until the filesystem refuses a single byte more; returns its path. */
export function fillDisk(dir: string): string {
  const filler = path.join(dir, "filler");
  const fd = openSync(filler, "a");
  try {
    for (const chunk of [Buffer.alloc(1024 * 1024), Buffer.alloc(4096), Buffer.alloc(1)]) {
      try {
        for (;;) writeSync(fd, chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
      }
    }
  } finally {
    closeSync(fd);
  }
  return filler;
}
