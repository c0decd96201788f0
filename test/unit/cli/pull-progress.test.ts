import { describe, expect, it } from "vitest";
import { describeProgress, formatEta, ProgressReporter } from "../../../src/cli/pull-progress.js";

const MiB = 2 ** 20;

/** A 350 MB image arriving in 16 KiB pieces over `seconds`, fed to a reporter on a fake clock; returns what it wrote. */
function pull(tty: boolean, seconds: number): string[] {
  let now = 1_000_000;
  const written: string[] = [];
  const reporter = new ProgressReporter("quay.test/app:1", tty, (t) => written.push(t), () => now);
  const total = 350 * MiB;
  const pieces = total / (16 * 1024);
  for (let i = 0; i <= pieces; i++) {
    now = 1_000_000 + (i * seconds * 1000) / pieces;
    reporter.update({ blobsDone: 0, blobsTotal: 4, bytes: i * 16 * 1024, bytesTotal: total });
  }
  reporter.done();
  return written;
}

describe("prefetch progress", () => {
  it("on a terminal: at most ten redraws a second, however many pieces arrive, then the line is cleared", () => {
    const written = pull(true, 10);
    const redraws = written.filter((w) => w.startsWith("\r\x1b[2Kquay.test/app:1 ["));
    expect(redraws.length).toBeGreaterThan(50);
    expect(redraws.length).toBeLessThanOrEqual(101);
    expect(written[written.length - 1]).toBe("\r\x1b[2K");
  });

  it("shows bytes against the total, the percentage, the rate and the time left", () => {
    const written = pull(true, 10);
    const half = written.find((w) => w.includes("(50%)"))!;
    expect(half).toMatch(/^\r\x1b\[2Kquay\.test\/app:1 \[#{10}-{10}\] 175\.\d MiB \/ 350\.0 MiB \(50%\), 35\.\d MiB\/s, ETA 5s$/);
  });

  it("without a terminal: a plain line every 5 s, no control characters", () => {
    const written = pull(false, 12);
    expect(written).toHaveLength(2);
    for (const line of written) expect(line).toMatch(/^pulling quay\.test\/app:1: [\d.]+ MiB \/ 350\.0 MiB \(\d+%\), 29\.\d MiB\/s, ETA \d+s\n$/);
  });

  it("without a declared total: bytes and rate, no percentage or ETA", () => {
    expect(describeProgress({ blobsDone: 1, blobsTotal: 2, bytes: 3 * MiB, bytesTotal: undefined }, 2000)).toBe("3.0 MiB, 1.5 MiB/s");
    expect(describeProgress({ blobsDone: 0, blobsTotal: 2, bytes: 0, bytesTotal: 10 * MiB }, 0)).toBe("0 B / 10.0 MiB (0%)");
  });

  it("times left read as seconds, minutes and hours", () => {
    expect(formatEta(4.2)).toBe("5s");
    expect(formatEta(185)).toBe("3m05s");
    expect(formatEta(3720)).toBe("1h02m");
  });
});
