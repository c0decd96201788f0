import { closeSync, openSync, readSync, writeSync } from "node:fs";
import path from "node:path";
import type { RegcacheProcess } from "./regcache-process.js";

/** Where a regcache process keeps the file of a sha256 digest (src/cache/data-paths.ts). */
export function blobFile(proxy: RegcacheProcess, digest: string): string {
  const hex = digest.slice("sha256:".length);
  return path.join(proxy.dataDir, "blobs", "sha256", hex.slice(0, 2), hex);
}

/** Flips one byte of a file in place, as a bad disk or a stray write would. */
export function flipByte(file: string, at: number): void {
  const fd = openSync(file, "r+");
  const byte = Buffer.alloc(1);
  readSync(fd, byte, 0, 1, at);
  byte[0] = byte[0]! ^ 0x20;
  writeSync(fd, byte, 0, 1, at);
  closeSync(fd);
}
