import { randomBytes } from "node:crypto";
import { open, readFile, rm } from "node:fs/promises";
import { RegcacheError, systemReason } from "../errors.js";
import type { Logger } from "../log/logger.js";

/**
 * The per-instance secret that keys credential HMACs. It lives in the data dir
 * (mode 0600) so that confirmations survive a restart for --offline-grace, and
 * differs per replica, so a stolen index from one replica says nothing about another.
 */
export async function loadInstanceSecret(file: string, logger: Logger): Promise<Buffer> {
  try {
    const existing = await readFile(file);
    if (existing.length >= 32) return existing;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  const secret = randomBytes(32);
  try {
    const handle = await open(file, "w", 0o600);
    try {
      await handle.writeFile(secret);
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (err) {
    // Serving matters more than the offline grace of confirmations: a secret kept in memory only
    // costs clients one upstream check each after the next restart (a full or read-only disk).
    // The partial file goes, so that start makes a whole one.
    const code = (err as NodeJS.ErrnoException).code;
    await rm(file, { force: true }).catch(() => undefined);
    logger.warn({ file, code, reason: systemReason(err) }, "cannot write the instance secret: it is kept in memory for this run; confirmations recorded now do not outlive it");
  }
  return secret;
}

/**
 * --instance-secret-file: one secret for every replica (a Kubernetes Secret), so that a credential
 * confirmed through one replica is recognised by the others, from the fleet index. Never created:
 * replicas that each made their own would silently share nothing.
 */
export async function readSharedSecret(file: string): Promise<Buffer> {
  let secret: Buffer;
  try {
    secret = await readFile(file);
  } catch (err) {
    throw new RegcacheError("CONFIG", `cannot read --instance-secret-file ${file}: ${systemReason(err)}`, { cause: err });
  }
  if (secret.length < 32) throw new RegcacheError("CONFIG", `--instance-secret-file ${file} holds ${secret.length} bytes; it needs at least 32 (e.g. head -c 32 /dev/urandom > ${file})`);
  return secret;
}
