import { mkdir, stat } from "node:fs/promises";
import path from "node:path";

/**
 * `mkdir -p` that fails with the real cause. Node's recursive mkdir reports a directory it
 * cannot create on a read-only filesystem as ENOENT, which tells the operator the path is
 * missing when the trouble is that nothing can be written there.
 */
export async function makeDirectory(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    // Created one level at a time from the top, the first level that fails says why.
    const missing: string[] = [];
    for (let level = path.resolve(dir); await isMissing(level); level = path.dirname(level)) missing.unshift(level);
    for (const level of missing) await mkdir(level);
  }
}

async function isMissing(file: string): Promise<boolean> {
  try {
    await stat(file);
    return false;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return true;
    throw err;
  }
}
