/**
 * What an errno from the data disk means, in one place: the disk store, the lock, the index and
 * start-up classify failures the same way.
 */

/** The disk is full (or the quota spent): eviction may make room. */
const NO_SPACE = new Set(["ENOSPC", "EDQUOT"]);

/**
 * The filesystem itself cannot be written now: read-only (ext4 `errors=remount-ro`, a read-only
 * remount), failing (EIO, a damaged filesystem's EUCLEAN) or a network volume gone stale or away.
 * A repaired disk mounted again is a new filesystem: what holds files open on the old one reopens.
 */
const FILESYSTEM_FAULTS = new Set(["EROFS", "EIO", "EUCLEAN", "ESTALE", "ENODEV", "ENXIO"]);

/**
 * A directory regcache writes in cannot be written: replaced by a file (EEXIST, ENOTDIR), gone
 * (ENOENT), or locked (EACCES, EPERM, e.g. `chattr +i`).
 */
const DIRECTORY_FAULTS = new Set(["ENOTDIR", "EISDIR", "EEXIST", "ENOENT", "EACCES", "EPERM"]);

export function errnoOf(err: unknown): string | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === "string" ? code : undefined;
}

export function isNoSpace(err: unknown): boolean {
  return NO_SPACE.has(errnoOf(err) ?? "");
}

export function isFilesystemFault(err: unknown): boolean {
  return FILESYSTEM_FAULTS.has(errnoOf(err) ?? "");
}

/** A fault of the disk or of a directory on it: regcache goes on serving what it holds, read-only. */
export function isDiskFault(err: unknown): boolean {
  const code = errnoOf(err) ?? "";
  return FILESYSTEM_FAULTS.has(code) || DIRECTORY_FAULTS.has(code);
}
