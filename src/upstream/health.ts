import type { Logger } from "../log/logger.js";

export type HealthState = "up" | "down";

export interface HostHealth {
  host: string;
  state: HealthState;
  since: number;
  consecutiveFailures: number;
  lastError?: string;
  /** The last failure was a 429: the host is rate-limiting, not broken, and clients are told so. */
  rateLimited?: boolean;
}

/**
 * A circuit breaker per upstream host. After `threshold` consecutive failures a
 * host is down: requests stop waiting on connect timeouts and go straight to the
 * cache, while a background probe checks the host every `probeInterval` and
 * closes the circuit when it answers again.
 */
export class UpstreamHealth {
  private readonly hosts = new Map<string, HostHealth>();
  private readonly probes = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly threshold: number,
    private readonly probeInterval: number,
    private readonly probe: (authority: string) => Promise<boolean>,
    private readonly logger: Logger,
  ) {}

  isDown(authority: string): boolean {
    return this.hosts.get(authority)?.state === "down";
  }

  isRateLimited(authority: string): boolean {
    return this.hosts.get(authority)?.rateLimited === true;
  }

  recordSuccess(authority: string): void {
    const health = this.hosts.get(authority);
    if (!health) {
      this.hosts.set(authority, { host: authority, state: "up", since: Date.now(), consecutiveFailures: 0 });
      return;
    }
    health.consecutiveFailures = 0;
    if (health.state === "down") this.transition(health, "up");
  }

  recordFailure(authority: string, reason: string, status?: number): void {
    let health = this.hosts.get(authority);
    if (!health) {
      health = { host: authority, state: "up", since: Date.now(), consecutiveFailures: 0 };
      this.hosts.set(authority, health);
    }
    health.consecutiveFailures += 1;
    health.lastError = reason;
    health.rateLimited = status === 429;
    if (health.state === "up" && health.consecutiveFailures >= this.threshold) {
      this.transition(health, "down");
    }
  }

  snapshot(): HostHealth[] {
    return [...this.hosts.values()].map((h) => ({ ...h }));
  }

  stop(): void {
    for (const timer of this.probes.values()) clearTimeout(timer);
    this.probes.clear();
  }

  private transition(health: HostHealth, state: HealthState): void {
    health.state = state;
    health.since = Date.now();
    const fields = { upstream: health.host, state, consecutiveFailures: health.consecutiveFailures, lastError: health.lastError };
    if (state === "down") {
      this.logger.warn(fields, "upstream marked down; serving from cache");
      this.scheduleProbe(health.host);
    } else {
      this.logger.warn(fields, "upstream recovered");
      const timer = this.probes.get(health.host);
      if (timer) clearTimeout(timer);
      this.probes.delete(health.host);
    }
  }

  private scheduleProbe(authority: string): void {
    const timer = setTimeout(() => {
      this.probe(authority).then(
        (ok) => {
          if (ok) this.recordSuccess(authority);
          else this.scheduleProbe(authority);
        },
        () => this.scheduleProbe(authority),
      );
    }, this.probeInterval);
    timer.unref();
    this.probes.set(authority, timer);
  }
}
