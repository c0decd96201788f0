import { randomBytes } from "node:crypto";
import { open, readFile } from "node:fs/promises";

/**
 * The per-instance secret that keys credential HMACs. It lives in the data dir
 * (mode 0600) so that confirmations survive a restart for --offline-grace, and
 * differs per replica, so a stolen index from one replica says nothing about another.
 */
export async function loadInstanceSecret(file: string): Promise<Buffer> {
  try {
    const existing = await readFile(file);
    if (existing.length >= 32) return existing;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  const secret = randomBytes(32);
  const handle = await open(file, "w", 0o600);
  try {
    await handle.writeFile(secret);
    await handle.sync();
  } finally {
    await handle.close();
  }
  return secret;
}
