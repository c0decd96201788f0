import { statfs } from "node:fs/promises";

/** Bytes an unprivileged writer may still put on the filesystem holding `dir`. */
export async function freeBytes(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

/**
 * Room kept free beside blobs: the sqlite index and its WAL grow too, and a disk filled to the
 * last byte fails those writes first.
 */
export const DISK_HEADROOM = 16 * 1024 * 1024;

/**
 * The cache bound this disk can honour: what is cached plus what is free, less the headroom, when
 * that is below the configured bound. Pure.
 */
export function effectiveCacheBound(configured: number, cachedBytes: number, free: number): number {
  return Math.max(0, Math.min(configured, cachedBytes + free - DISK_HEADROOM));
}
