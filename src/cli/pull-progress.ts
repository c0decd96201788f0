import type { PullProgress } from "../prefetch/image-puller.js";
import { formatBytes } from "./format-bytes.js";

/** A terminal redraws the progress line at most this often: bytes arrive in 16 KiB pieces, thousands a second. */
const REDRAW_MS = 100;
/** Without a terminal (CI logs, kubectl logs), a line this often says a large pull is alive. */
const LINE_MS = 5_000;
const BAR_WIDTH = 20;

/** "42s", "3m05s", "1h02m". Pure. */
export function formatEta(seconds: number): string {
  const s = Math.max(0, Math.ceil(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/**
 * "120.5 MiB / 350.0 MiB (34%), 48.2 MiB/s, ETA 5s": bytes against the total the manifests
 * declare, the mean rate since the first blob was asked for, and the time left at that rate. Pure.
 */
export function describeProgress(p: PullProgress, elapsedMs: number): string {
  const rate = elapsedMs > 0 ? (p.bytes * 1000) / elapsedMs : 0;
  const parts = [p.bytesTotal === undefined ? formatBytes(p.bytes) : `${formatBytes(p.bytes)} / ${formatBytes(p.bytesTotal)} (${percent(p)}%)`];
  if (rate > 0) parts.push(`${formatBytes(Math.round(rate))}/s`);
  if (rate > 0 && p.bytesTotal !== undefined) parts.push(`ETA ${formatEta((p.bytesTotal - p.bytes) / rate)}`);
  return parts.join(", ");
}

function percent(p: PullProgress): number {
  return p.bytesTotal ? Math.min(100, Math.floor((100 * p.bytes) / p.bytesTotal)) : 100;
}

/**
 * One image's progress: on a terminal a line redrawn in place, at most every REDRAW_MS; otherwise
 * a plain line every LINE_MS. `done()` clears the terminal line before the result is printed.
 */
export class ProgressReporter {
  private readonly started: number;
  private lastShown: number;

  constructor(
    private readonly image: string,
    private readonly tty: boolean,
    private readonly write: (text: string) => void,
    /** A monotonic clock: the rate and the time left are durations, which a wall-clock step must not bend. */
    private readonly now: () => number = () => performance.now(),
  ) {
    this.started = now();
    this.lastShown = this.tty ? -Infinity : this.started;
  }

  update(p: PullProgress): void {
    const t = this.now();
    if (t - this.lastShown < (this.tty ? REDRAW_MS : LINE_MS)) return;
    this.lastShown = t;
    const summary = describeProgress(p, t - this.started);
    if (!this.tty) {
      this.write(`pulling ${this.image}: ${summary}\n`);
      return;
    }
    const filled = p.bytesTotal ? Math.round((BAR_WIDTH * percent(p)) / 100) : 0;
    this.write(`\r\x1b[2K${this.image} [${"#".repeat(filled)}${"-".repeat(BAR_WIDTH - filled)}] ${summary}`);
  }

  done(): void {
    if (this.tty && this.lastShown !== -Infinity) this.write("\r\x1b[2K");
  }
}
