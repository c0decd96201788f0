import type { Logger } from "../log/logger.js";

/** Why the peer port refused a connection. */
export type RefusalCause = "no-certificate" | "other-ca" | "unverified-certificate" | "not-a-peer" | "handshake";

const MESSAGES: Record<RefusalCause, string> = {
  "no-certificate": "peer channel: refused clients without a certificate",
  "other-ca": "peer channel: refused client certificates from another CA",
  "unverified-certificate": "peer channel: refused client certificates that do not verify",
  "not-a-peer": "peer channel: refused certificates from our CA that are not a peer's",
  handshake: "peer channel: refused connections that failed the TLS handshake",
};

/** One line per cause this often at most: a scanner or a slowloris run must not flood the log. */
const WINDOW_MS = 60_000;
/** Addresses named on one line; the others are counted. */
const MAX_CLIENTS = 5;

interface Window {
  cause: RefusalCause;
  reason: string | undefined;
  openedAt: number;
  count: number;
  clients: Set<string>;
  /** Refusals of clients beyond the MAX_CLIENTS named. */
  fromOthers: number;
  timer: NodeJS.Timeout;
}

/**
 * Refused connections to the peer port, logged as one line per cause (and reason) per minute: the
 * first at once, then what came since, with a count and the clients' addresses. A replica that is
 * not a peer, a scanner or a misconfigured client shows up without drowning the log.
 */
export class RefusalLog {
  /** Refusals by cause since the start, for /metrics. */
  readonly counts: Record<string, number> = {};
  private readonly windows = new Map<string, Window>();

  constructor(private readonly logger: Logger) {}

  note(cause: RefusalCause, client: string | undefined, reason?: string): void {
    this.counts[cause] = (this.counts[cause] ?? 0) + 1;
    const key = `${cause}:${reason ?? ""}`;
    const open = this.windows.get(key);
    const address = client ?? "unknown";
    if (open) {
      open.count += 1;
      if (open.clients.size < MAX_CLIENTS || open.clients.has(address)) open.clients.add(address);
      else open.fromOthers += 1;
      return;
    }
    this.logger.warn({ cause, reason, count: 1, clients: [address] }, MESSAGES[cause]);
    this.openWindow(key, cause, reason);
  }

  /** Logs what each cause counted since its last line (at shutdown: nothing counted is lost). */
  close(): void {
    for (const [key, window] of this.windows) {
      clearTimeout(window.timer);
      this.report(window);
      this.windows.delete(key);
    }
  }

  private openWindow(key: string, cause: RefusalCause, reason: string | undefined): void {
    const window: Window = {
      cause,
      reason,
      openedAt: Date.now(),
      count: 0,
      clients: new Set<string>(),
      fromOthers: 0,
      timer: setTimeout(() => {
        this.windows.delete(key);
        // Refusals kept coming: the next minute is a window of its own, so the next line waits for it too.
        if (this.report(window)) this.openWindow(key, cause, reason);
      }, WINDOW_MS),
    };
    window.timer.unref();
    this.windows.set(key, window);
  }

  /** One line for what a window counted; false when it counted nothing. */
  private report(window: Window): boolean {
    if (window.count === 0) return false;
    const { cause, reason, count, fromOthers } = window;
    this.logger.warn({ cause, reason, count, clients: [...window.clients], ...(fromOthers > 0 ? { fromOthers } : {}), overMs: Date.now() - window.openedAt }, MESSAGES[cause]);
    return true;
  }
}
