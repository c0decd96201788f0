/**
 * Free page reporting (virtio-balloon) hands memory the guest kernel freed back to the hypervisor
 * once it has been free for about two seconds; the next write into it then costs the guest's
 * kernel about 1.5 CPU-s per GB more, charged to whichever process touches it first (on this
 * kind of VM: `dd if=/dev/zero of=F bs=1M count=2000 conv=fsync` took 3.3 s of system time into
 * reported memory and 0.3 s into memory freed a moment before). Which fill meets reported memory
 * depends on what was freed when, not on regcache. So the CPU-per-GB figures are taken with
 * reporting held off (the page order it reports from is set above the largest there is, and put
 * back afterwards) and the free memory touched once first, as a long-running node's memory is.
 * Without root, or on a machine without it, nothing changes, and the bench says so.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";

const ORDER = "/sys/module/page_reporting/parameters/page_reporting_order";
/** Above MAX_PAGE_ORDER (10): no free block is ever large enough to be reported. */
const NEVER = "11";
/** What the touching leaves free, so that nothing else on the machine runs short meanwhile. */
const LEAVE_MIB = 2048;

/**
 * Touches every free page but LEAVE_MIB (the page cache stays), in a child that then exits: its
 * pages go back to the free lists, already backed by the hypervisor.
 */
function touchFreeMemory(): number {
  const script = `
    const fs = require("node:fs");
    const free = () => Number(/MemFree:\\s+(\\d+)/.exec(fs.readFileSync("/proc/meminfo", "utf8"))[1]) / 1024;
    const held = [];
    while (free() > ${LEAVE_MIB} + 256) held.push(Buffer.allocUnsafeSlow(256 * 1024 * 1024).fill(1));
    process.stdout.write(String(held.length * 256));`;
  return Number(execFileSync(process.execPath, ["-e", script], { encoding: "utf8" }));
}

/** Holds off free page reporting until the returned function is called; `said` tells what was done. */
export function holdPageReporting(): { said: string; restore: () => void } {
  let previous: string;
  try {
    previous = readFileSync(ORDER, "utf8").trim();
    writeFileSync(ORDER, NEVER);
  } catch (err) {
    return { said: `free page reporting left as it is (${(err as NodeJS.ErrnoException).code ?? String(err)} on ${ORDER})`, restore: () => undefined };
  }
  let touched: number;
  try {
    touched = touchFreeMemory();
  } catch (err) {
    writeFileSync(ORDER, previous);
    throw err;
  }
  return {
    said: `free page reporting held off (page_reporting_order ${previous} → ${NEVER}) and ${touched} MiB of free memory touched first`,
    restore: () => writeFileSync(ORDER, previous),
  };
}
