/**
 * CPU time of processes from /proc/<pid>/stat: user plus system time of all their threads (libuv's
 * pool, where files are read, written and hashed, included), in seconds. Where processes share the
 * cores, wall-clock ratios measure the machine; what each process spends is what it controls.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

const TICKS_PER_SECOND = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim());

/** User and system time of a process, all its threads. */
export interface CpuTime {
  user: number;
  system: number;
}

export function cpuTime(pid: number): CpuTime {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may hold spaces), from the 3rd: utime is the 14th, stime the 15th.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { user: Number(fields[11]) / TICKS_PER_SECOND, system: Number(fields[12]) / TICKS_PER_SECOND };
}

/**
 * What each of `pids` spends on `work` and on what it set going: after `work`, waits until
 * `done` says the background work is over (an upload, say), then until a quarter second passes in
 * which they all spend at most one clock tick (the index write, the fsync, a replication).
 */
export async function cpuOf(pids: number[], work: () => Promise<unknown>, done: () => Promise<boolean> = async () => true): Promise<CpuTime[]> {
  const before = pids.map(cpuTime);
  await work();
  const deadline = Date.now() + 60_000;
  let last = pids.map(cpuTime);
  for (;;) {
    await new Promise((r) => setTimeout(r, 250));
    const now = pids.map(cpuTime);
    const spent = now.reduce((sum, t, i) => sum + t.user + t.system - last[i]!.user - last[i]!.system, 0);
    last = now;
    if (Date.now() > deadline) throw new Error(`processes ${pids.join(", ")} still busy a minute after the work`);
    if (spent <= 1.5 / TICKS_PER_SECOND && (await done())) break;
  }
  return last.map((t, i) => ({ user: t.user - before[i]!.user, system: t.system - before[i]!.system }));
}
