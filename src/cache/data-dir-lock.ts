import { open, readFile, readlink, rm, symlink } from "node:fs/promises";
import { RegcacheError } from "../errors.js";
import { isFilesystemFault } from "./disk-errors.js";

export class DataDirLockedError extends RegcacheError {
  constructor(
    readonly lockFile: string,
    readonly pid: number,
  ) {
    super("DATA_DIR_LOCKED", `data dir is in use: ${lockFile} is held by running process ${pid}; give each regcache process its own --data-dir`);
  }
}

/** Errors of filesystems that have no symbolic links (vfat, SMB mounted without mfsymlinks). */
const NO_SYMLINKS = new Set(["EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS"]);

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** A held lock: in the data dir, or beside it while the data dir's disk is read-only. */
export interface DataDirLock {
  /** The lock's path now. */
  readonly file: string;
  /** False while the lock lives outside the data dir (its disk was read-only). */
  readonly onDisk: boolean;
  release(): Promise<void>;
  /** Takes the lock in the data dir once its disk is writable again, and lets the one outside go. */
  returnToDisk(): Promise<void>;
}

/**
 * A pid lock: two processes writing one index and one tmp dir would corrupt both.
 * A lock left by a killed process (its pid gone, or our own pid reused after a
 * container restart) is taken over.
 *
 * The lock is a symbolic link whose target is the owner's pid. Creating it is atomic, and a
 * short target is kept in the inode, so the lock is taken on a full disk too: a restart on a
 * full disk must not crash-loop, and writing the pid into a file needs a data block that a full
 * disk refuses. An empty lock file cannot stand in for it: after a crash it would be held by
 * nobody, yet look held forever (or, read as free, would let a second process in).
 *
 * A read-only disk takes no lock at all, yet what it holds can still be served. Then a lock the
 * data dir holds is honoured if its process runs, and this process's lock is `fallbackFile`
 * (outside that disk, named for the data dir): no two processes on this machine serve the
 * directory, and the one that does takes the real lock when the disk can be written again.
 */
export async function acquireDataDirLock(lockFile: string, fallbackFile?: string): Promise<DataDirLock> {
  try {
    await takeLock(lockFile);
  } catch (err) {
    if (fallbackFile === undefined || !isFilesystemFault(err)) throw err;
    await takeLock(fallbackFile);
    return heldLock(lockFile, fallbackFile);
  }
  // A process of this machine may serve the directory from the lock outside, its disk having been
  // read-only when it started: the lock on the disk alone does not say so.
  if (fallbackFile !== undefined) {
    const outside = await lockOwner(fallbackFile);
    if (Number.isInteger(outside) && outside > 0 && outside !== process.pid && isAlive(outside)) {
      await rm(lockFile, { force: true });
      throw new DataDirLockedError(fallbackFile, outside);
    }
  }
  return heldLock(lockFile, lockFile);
}

function heldLock(lockFile: string, held: string): DataDirLock {
  let file = held;
  return {
    get file() {
      return file;
    },
    get onDisk() {
      return file === lockFile;
    },
    async release() {
      await rm(file, { force: true });
    },
    async returnToDisk() {
      if (file === lockFile) return;
      await takeLock(lockFile);
      await rm(file, { force: true });
      file = lockFile;
    },
  };
}

async function takeLock(lockFile: string): Promise<void> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await createLock(lockFile);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const pid = await lockOwner(lockFile);
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) {
        throw new DataDirLockedError(lockFile, pid);
      }
      await rm(lockFile, { force: true });
    }
  }
  throw new RegcacheError("DATA_DIR_LOCKED", `cannot acquire ${lockFile}: another process took it as this one started`);
}

async function createLock(lockFile: string): Promise<void> {
  try {
    await symlink(String(process.pid), lockFile);
  } catch (err) {
    if (!NO_SYMLINKS.has((err as NodeJS.ErrnoException).code ?? "")) throw err;
    const handle = await open(lockFile, "wx", 0o644);
    try {
      await handle.writeFile(`${process.pid}\n`);
    } finally {
      await handle.close();
    }
  }
}

/** The pid in a lock: a link's target, or the content of a lock file (older versions, filesystems without links). */
async function lockOwner(lockFile: string): Promise<number> {
  const text = await readlink(lockFile)
    .catch(async (err: NodeJS.ErrnoException) => (err.code === "EINVAL" ? readFile(lockFile, "utf8") : ""))
    .catch(() => "");
  return Number(text.trim());
}
