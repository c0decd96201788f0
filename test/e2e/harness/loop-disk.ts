import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { IN_CI, isRoot, missingTools } from "./tools.js";

/** A real ext4 filesystem needs root to mount, the loop driver, and ext4's error trigger. */
export function loopDiskUnavailable(): boolean {
  if (missingTools("mkfs.ext4", "e2fsck", "losetup", "mount", "umount").length > 0) return true;
  if (!isRoot()) {
    if (IN_CI) throw new Error("CI=true but not running as root: the ext4 data-disk tests cannot mount a loop device");
    return true;
  }
  return false;
}

/**
 * An ext4 filesystem in an image file, loop-mounted with `errors=remount-ro` as a node's cache disk
 * would be. `failReadOnly` makes the kernel itself turn it read-only, as after an I/O error
 * (ext4's `trigger_fs_error`: the journal is aborted, every write then fails with EROFS).
 * Such a filesystem cannot be made writable in place: `repair` is what an operator does, a lazy
 * unmount, e2fsck, and a mount of the image at the same path (on a new loop device: the old one
 * lives on while a process holds files of the failed filesystem open).
 */
export class LoopDisk {
  private readonly devices: string[] = [];

  constructor(
    readonly image: string,
    readonly mountPoint: string,
    private readonly sizeBytes: number,
  ) {}

  mount(): void {
    if (!existsSync(this.image)) {
      mkdirSync(path.dirname(this.image), { recursive: true });
      writeFileSync(this.image, "");
      execFileSync("truncate", ["-s", String(this.sizeBytes), this.image]);
      execFileSync("mkfs.ext4", ["-q", "-F", this.image]);
    }
    mkdirSync(this.mountPoint, { recursive: true });
    const device = execFileSync("losetup", ["-f", "--show", this.image]).toString().trim();
    this.devices.push(device);
    execFileSync("mount", ["-o", "errors=remount-ro", device, this.mountPoint]);
  }

  /** What ext4 does on an I/O error under `errors=remount-ro`. */
  failReadOnly(): void {
    writeFileSync(`/sys/fs/ext4/${path.basename(this.devices.at(-1)!)}/trigger_fs_error`, "regcache test: simulated I/O error\n");
  }

  repair(): void {
    execFileSync("umount", ["-l", this.mountPoint]);
    // 1 and 2: errors were found and corrected, as after the failure this disk had.
    const fsck = spawnSync("e2fsck", ["-f", "-y", this.image], { stdio: "ignore" });
    if (fsck.status === null || fsck.status > 2) throw new Error(`e2fsck ${this.image} exited with ${fsck.status ?? fsck.signal}`);
    this.mount();
  }

  /** Lazy, so that a file a failed test left open never keeps the mount alive; loop devices go when their last user does. */
  cleanup(): void {
    try {
      execFileSync("umount", ["-l", this.mountPoint], { stdio: "ignore" });
    } catch {
      // not mounted
    }
    for (const device of this.devices) {
      try {
        execFileSync("losetup", ["-d", device], { stdio: "ignore" });
      } catch {
        // already gone
      }
    }
  }
}
