import { execFileSync, spawnSync } from "node:child_process";
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
    const lock = await acquireDataDirLock(lockFile);
    expect(lock.onDisk).toBe(true);
    expect(lstatSync(lockFile).isSymbolicLink()).toBe(true);
    expect(readlinkSync(lockFile)).toBe(String(process.pid));
    await lock.release();
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
    const lock = await acquireDataDirLock(lockFile);
    expect(readlinkSync(lockFile)).toBe(String(process.pid));
    await lock.release();
    writeFileSync(lockFile, `${deadPid()}\n`);
    await (await acquireDataDirLock(lockFile)).release();
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
    const lock = await acquireDataDirLock(lockFile);
    expect(readlinkSync(lockFile)).toBe(String(process.pid));
    await lock.release();
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
    expect(lines).toMatchObject([{ level: 40, msg: expect.stringContaining("instance secret: it is kept in memory for this run") }]);
  });
});

describe.skipIf(tmpfsUnavailable())("the lock on a read-only data disk", () => {
  let dir: string;
  let fallback: string;
  const remount = (mode: "ro" | "rw"): void => void execFileSync("mount", ["-o", `remount,${mode}`, dir]);
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), "regcache-ro-"));
    fallback = path.join(mkdtempSync(path.join(tmpdir(), "regcache-ro-lock-")), "data.lock");
    mountTmpfs(dir, 1024 * 1024);
  });
  afterEach(() => {
    remount("rw");
    for (const name of readdirSync(dir)) rmSync(path.join(dir, name), { force: true });
    rmSync(fallback, { force: true });
  });
  afterAll(() => {
    unmountTmpfs(dir);
    rmSync(dir, { recursive: true, force: true });
    rmSync(path.dirname(fallback), { recursive: true, force: true });
  });

  it("is held outside the disk, and moves onto it when the disk can be written again", async () => {
    const lockFile = path.join(dir, "lock");
    symlinkSync(String(deadPid()), lockFile);
    remount("ro");
    const lock = await acquireDataDirLock(lockFile, fallback);
    expect(lock.onDisk).toBe(false);
    expect(lock.file).toBe(fallback);
    expect(readlinkSync(fallback)).toBe(String(process.pid));
    remount("rw");
    await lock.returnToDisk();
    expect(lock.onDisk).toBe(true);
    expect(readlinkSync(lockFile)).toBe(String(process.pid));
    expect(existsSync(fallback)).toBe(false);
    await lock.release();
    expect(existsSync(lockFile)).toBe(false);
  });

  it("still keeps out a process the disk's own lock names, when that process runs", async () => {
    const lockFile = path.join(dir, "lock");
    symlinkSync(String(process.ppid), lockFile);
    remount("ro");
    await expect(acquireDataDirLock(lockFile, fallback)).rejects.toBeInstanceOf(DataDirLockedError);
    expect(existsSync(fallback)).toBe(false);
  });

  it("without a place outside, a read-only disk's lock fails as before, naming the cause", async () => {
    remount("ro");
    await expect(acquireDataDirLock(path.join(dir, "lock"))).rejects.toMatchObject({ code: "EROFS" });
  });
});
