import type { BigIntStats } from "node:fs";
import { fstatSync, statSync } from "node:fs";
import { stat } from "node:fs/promises";

/**
 * What a file looked like on disk: a write in place changes its mtime and ctime (even one that
 * keeps the size), a replacement its inode. Nanosecond times, so that two writes within a
 * millisecond still differ.
 */
export interface FileStamp {
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  ino: bigint;
  dev: bigint;
}

function stampOf(s: BigIntStats): FileStamp {
  return { size: s.size, mtimeNs: s.mtimeNs, ctimeNs: s.ctimeNs, ino: s.ino, dev: s.dev };
}

/** The stamp of an open file: one fstat, the whole cost of a hit's check. */
export function stampOfDescriptor(fd: number): FileStamp {
  return stampOf(fstatSync(fd, { bigint: true }));
}

/**
 * The stamp of a file by path, now: for a caller that must not yield (a download's commit indexes
 * the file before anything waiting on the download runs). Undefined when it cannot be read.
 */
export function stampOfFileNow(file: string): FileStamp | undefined {
  try {
    return stampOf(statSync(file, { bigint: true }));
  } catch {
    return undefined;
  }
}

/** The stamp of a file by path; undefined when it cannot be read. */
export async function stampOfFile(file: string): Promise<FileStamp | undefined> {
  return stat(file, { bigint: true }).then(stampOf, () => undefined);
}

function sameStamp(a: FileStamp, b: FileStamp): boolean {
  return a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs && a.ino === b.ino && a.dev === b.dev;
}

/**
 * The cached files that matched their digest since this process started, with what each looked
 * like then. A file that no longer looks the same (a write in place, a copy over it) is no longer
 * known good and is hashed again when served: a byte flipped by a stray write is caught at the
 * next hit, not at the next scrub. Silent media errors change none of this and stay the scrub's job.
 */
export class VerifiedFiles {
  private readonly stamps = new Map<string, FileStamp>();

  /** Records that `digest`'s file, looking like `stamp`, matched its digest (no stamp: it cannot be read, so nothing is recorded). */
  add(digest: string, stamp: FileStamp | undefined): void {
    if (stamp) this.stamps.set(digest, stamp);
    else this.stamps.delete(digest);
  }

  /** Whether `digest`'s file matched its digest this run and still looks as it did then. */
  matches(digest: string, stamp: FileStamp): boolean {
    const known = this.stamps.get(digest);
    return known !== undefined && sameStamp(known, stamp);
  }

  forget(digest: string): void {
    this.stamps.delete(digest);
  }
}
