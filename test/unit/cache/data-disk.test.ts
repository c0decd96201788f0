import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { DataDisk } from "../../../src/cache/data-disk.js";
import { DataPaths } from "../../../src/cache/data-paths.js";
import { createLogger } from "../../../src/log/logger.js";
import { fillDisk, mountTmpfs, tmpfsUnavailable, unmountTmpfs } from "../../e2e/harness/tmpfs.js";

function recording(): { logger: ReturnType<typeof createLogger>; lines: { level: number; msg: string; code?: string }[] } {
  const lines: { level: number; msg: string; code?: string }[] = [];
  return { logger: createLogger("debug", { write: (line: string) => void lines.push(JSON.parse(line) as { level: number; msg: string }) }), lines };
}

const errno = (code: string, file?: string): NodeJS.ErrnoException => Object.assign(new Error(code), { code, path: file });

describe("DataDisk", () => {
  const dirs: string[] = [];
  const disks: DataDisk[] = [];
  afterEach(() => {
    vi.useRealTimers();
    for (const disk of disks.splice(0)) disk.stop();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
  const newDisk = (): { disk: DataDisk; paths: DataPaths; lines: { level: number; msg: string; code?: string }[] } => {
    const dir = mkdtempSync(path.join(tmpdir(), "regcache-disk-"));
    dirs.push(dir);
    const paths = new DataPaths(dir);
    const { logger, lines } = recording();
    const disk = new DataDisk(paths, logger);
    disks.push(disk);
    return { disk, paths, lines };
  };

  it("a disk's faults put it in read-only mode; an upstream's failure, a full disk or an error without a code do not", () => {
    const { disk } = newDisk();
    for (const err of [errno("ECONNRESET"), errno("UND_ERR_SOCKET"), errno("ENOSPC"), new Error("digest mismatch")]) expect(disk.failed(err, "write a cache file")).toBe(false);
    expect(disk.writable).toBe(true);
    expect(disk.failed(errno("EROFS"), "create a cache file")).toBe(true);
    expect(disk.fault).toMatchObject({ action: "create a cache file", code: "EROFS", reason: "read-only file system" });
  });

  it("says so once a minute at most, however often it fails, is bypassed, or flaps; a fault of another kind at once", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const { disk, lines } = newDisk();
    const warnings = (): (string | undefined)[] => lines.filter((l) => l.level === 40).map((l) => l.code);
    for (let i = 0; i < 3; i++) {
      disk.failed(errno("EIO"), "write a cache file");
      disk.bypassed();
      // The probe finds the disk writable: the fault ends, and the same one comes back.
      await vi.advanceTimersByTimeAsync(5_000);
      await vi.waitFor(() => expect(disk.writable).toBe(true));
    }
    expect(warnings()).toEqual(["EIO"]);
    disk.failed(errno("EROFS"), "create a cache file");
    expect(warnings()).toEqual(["EIO", "EROFS"]);
  });

  it("at start: a tmp/ that is a file is a fault; the probe leaves no file behind", async () => {
    const { disk, paths } = newDisk();
    await disk.check();
    expect(disk.writable).toBe(true);
    expect(readdirSync(paths.tmpDir)).toEqual([]);
    expect(readdirSync(path.join(paths.blobsDir, "sha256"))).toEqual([]);
    rmSync(paths.tmpDir, { recursive: true });
    writeFileSync(paths.tmpDir, "not a directory");
    await disk.check();
    expect(disk.fault?.code).toBe("EEXIST");
  });

  it("ends when a probe succeeds, after the callbacks, which get the error that began it; a callback that throws keeps it", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const { disk, paths, lines } = newDisk();
    mkdirSync(paths.root, { recursive: true });
    writeFileSync(paths.tmpDir, "not a directory");
    const seen: unknown[] = [];
    let refuse = true;
    disk.onWritable(async (fault) => {
      seen.push(fault);
      if (refuse) throw new Error("the index cannot be reopened yet");
    });
    disk.failed(errno("EROFS", paths.tmpDir), "create a cache file");
    rmSync(paths.tmpDir);
    await vi.advanceTimersByTimeAsync(5_000);
    await vi.waitFor(() => expect(seen).toHaveLength(1));
    expect(disk.writable).toBe(false);
    refuse = false;
    await vi.advanceTimersByTimeAsync(5_000);
    await vi.waitFor(() => expect(disk.writable).toBe(true));
    expect((seen[1] as NodeJS.ErrnoException).code).toBe("EROFS");
    expect(lines.some((l) => l.msg === "data disk writable again: caching resumes")).toBe(true);
  });

  it("the probe writes in the directory the failure named too", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const { disk, paths } = newDisk();
    const prefix = path.join(paths.blobsDir, "sha256", "ab");
    mkdirSync(path.dirname(prefix), { recursive: true });
    writeFileSync(prefix, "a file where a prefix directory belongs");
    disk.failed(errno("ENOTDIR", path.join(prefix, "abcdef")), "create a cache file");
    await vi.advanceTimersByTimeAsync(5_000);
    await new Promise((r) => setImmediate(r));
    expect(disk.writable).toBe(false);
    rmSync(prefix);
    await vi.advanceTimersByTimeAsync(5_000);
    await vi.waitFor(() => expect(disk.writable).toBe(true));
  });
});

describe.skipIf(tmpfsUnavailable())("DataDisk on a full disk", () => {
  it("starting on a full disk is not read-only mode: the store's space rules handle it", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "regcache-full-disk-"));
    mountTmpfs(dir, 1024 * 1024);
    try {
      const paths = new DataPaths(path.join(dir, "data"));
      mkdirSync(paths.root);
      fillDisk(dir);
      const disk = new DataDisk(paths, createLogger("silent"));
      await disk.check();
      expect(disk.writable).toBe(true);
      expect(readdirSync(paths.tmpDir)).toEqual([]);
      disk.stop();
    } finally {
      unmountTmpfs(dir);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
