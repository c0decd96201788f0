import type { Logger } from "../log/logger.js";

/** Uploads at once: enough to keep a store busy, few enough not to compete with clients for the disk. */
const CONCURRENCY = 2;
/** A failed upload is retried after 5 s, doubling up to 5 minutes: the store may be down for a while. */
const FIRST_RETRY_MS = 5_000;
const MAX_RETRY_MS = 5 * 60_000;
/** Past this many waiting, the oldest are dropped: the local tier and upstream still have them. */
const MAX_QUEUED = 10_000;

export interface UploadJob {
  key: string;
  /** Rejects to be retried; "gone" when there is nothing left to upload. */
  run(): Promise<"uploaded" | "gone">;
  /** Called once, when the job ends (done, gone or dropped). */
  settled(result: "uploaded" | "gone" | "dropped"): void;
}

interface Waiting {
  job: UploadJob;
  attempts: number;
  /** Not retried before this (ms since the epoch). */
  notBefore: number;
}

export interface UploadQueueStats {
  queued: number;
  uploaded: number;
  failures: number;
  dropped: number;
}

/**
 * Background uploads to the object store: a few at a time, each retried with backoff until it
 * succeeds, so that an object store that is down delays uploads instead of losing them.
 */
export class UploadQueue {
  private readonly waiting = new Map<string, Waiting>();
  private running = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  readonly stats: UploadQueueStats = { queued: 0, uploaded: 0, failures: 0, dropped: 0 };

  constructor(private readonly logger: Logger) {}

  add(job: UploadJob): void {
    if (this.closed || this.waiting.has(job.key)) return job.settled("dropped");
    if (this.waiting.size >= MAX_QUEUED) {
      const [oldest] = this.waiting;
      this.waiting.delete(oldest![0]);
      this.stats.dropped += 1;
      oldest![1].job.settled("dropped");
    }
    this.waiting.set(job.key, { job, attempts: 0, notBefore: 0 });
    this.stats.queued = this.waiting.size;
    this.pump();
  }

  /** Stops; what waits is dropped (its jobs told, so that they release what they hold). */
  close(): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
    for (const { job } of this.waiting.values()) job.settled("dropped");
    this.waiting.clear();
  }

  private pump(): void {
    if (this.closed) return;
    const now = performance.now();
    let nextRetry = Infinity;
    for (const [key, item] of this.waiting) {
      if (this.running >= CONCURRENCY) return;
      if (item.notBefore > now) {
        nextRetry = Math.min(nextRetry, item.notBefore);
        continue;
      }
      this.waiting.delete(key);
      this.start(item);
    }
    clearTimeout(this.retryTimer);
    if (nextRetry === Infinity) return;
    this.retryTimer = setTimeout(() => this.pump(), nextRetry - now);
    this.retryTimer.unref();
  }

  private start(item: Waiting): void {
    this.running += 1;
    item.job.run().then(
      (result) => {
        this.running -= 1;
        if (result === "uploaded") this.stats.uploaded += 1;
        item.job.settled(result);
        this.stats.queued = this.waiting.size;
        this.pump();
      },
      (err: unknown) => {
        this.running -= 1;
        this.stats.failures += 1;
        item.attempts += 1;
        const delay = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** (item.attempts - 1));
        item.notBefore = performance.now() + delay;
        this.logger.warn({ key: item.job.key, attempts: item.attempts, retryInMs: delay, err: (err as Error).message }, "upload to the object store failed; retrying later");
        if (!this.closed) this.waiting.set(item.job.key, item);
        this.stats.queued = this.waiting.size;
        this.pump();
      },
    );
  }
}
