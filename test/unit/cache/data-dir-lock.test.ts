import { spawnSync } from "node:child_process";
import { existsSync, lstatSync, mkdtempSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { acquireDataDirLock, DataDirLockedError } from "../../../src/cache/data-dir-lock.js";
import { loadInstanceSecret } from "../../../src/cache/instance-secret.js";
import { createLogger } from "../../../src/log/logger.js";
import { fillDisk, mountTmpfs, tmpfsUnavailable, unmountTmpfs } from "../../e2e/harness/tmpfs.js";

/** A pid no process has: one that just exited (the kernel does not reuse pids at once). */
function deadPid(): number {
  return Number(spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"]).stdout.toString());
}

describe("data dir lock", () => {
  let dir: string;
  let lockFile: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), "regcache-lock-"));
    lockFile = path.join(dir, "lock");
  });
  afterEach(() => rmSync(lockFile, { force: true }));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("is a link to our pid, removed on release", async () => {
    const release = await acquireDataDirLock(lockFile);
    expect(lstatSync(lockFile).isSymbolicLink()).toBe(true);
    expect(readlinkSync(lockFile)).toBe(String(process.pid));
    await release();
    expect(existsSync(lockFile)).toBe(false);
  });

  it("refuses a lock a running process holds, as a link or as an older version's pid file", async () => {
    symlinkSync(String(process.ppid), lockFile);
    await expect(acquireDataDirLock(lockFile)).rejects.toBeInstanceOf(DataDirLockedError);
    rmSync(lockFile);
    writeFileSync(lockFile, `${process.ppid}\n`);
    await expect(acquireDataDirLock(lockFile)).rejects.toThrow(`held by running process ${process.ppid}`);
  });

  it("takes over a lock whose process is gone", async () => {
    symlinkSync(String(deadPid()), lockFile);
    const release = await acquireDataDirLock(lockFile);
    expect(readlinkSync(lockFile)).toBe(String(process.pid));
    await release();
    writeFileSync(lockFile, `${deadPid()}\n`);
    await (await acquireDataDirLock(lockFile))();
  });
});

describe.skipIf(tmpfsUnavailable())("start-up files on a full disk", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), "regcache-full-"));
    mountTmpfs(dir, 1024 * 1024);
  });
  afterEach(() => {
    for (const name of readdirSync(dir)) rmSync(path.join(dir, name), { force: true });
  });
  afterAll(() => {
    unmountTmpfs(dir);
    rmSync(dir, { recursive: true, force: true });
  });

  it("the lock is taken and still keeps a second process out", async () => {
    fillDisk(dir);
    const lockFile = path.join(dir, "lock");
    const release = await acquireDataDirLock(lockFile);
    expect(readlinkSync(lockFile)).toBe(String(process.pid));
    await release();
    symlinkSync(String(process.ppid), lockFile);
    await expect(acquireDataDirLock(lockFile)).rejects.toBeInstanceOf(DataDirLockedError);
  });

  it("the instance secret is read back when it exists, and kept in memory for the run when it cannot be written", async () => {
    const file = path.join(dir, "instance-secret");
    const lines: { level: number; msg: string }[] = [];
    const logger = createLogger("debug", { write: (line: string) => void lines.push(JSON.parse(line) as { level: number; msg: string }) });
    const stored = await loadInstanceSecret(file, logger);
    fillDisk(dir);
    expect((await loadInstanceSecret(file, logger)).equals(stored)).toBe(true);
    expect(lines).toEqual([]);

    rmSync(file);
    fillDisk(dir);
    const volatile = await loadInstanceSecret(file, logger);
    expect(volatile).toHaveLength(32);
    expect(volatile.equals(stored)).toBe(false);
    expect(existsSync(file)).toBe(false);
    expect(lines).toMatchObject([{ level: 40, msg: expect.stringContaining("instance secret is kept in memory") }]);
  });
});
