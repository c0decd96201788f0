import type { Logger } from "../log/logger.js";
import { parseAuthority, type Send } from "./client.js";
import { LruMap } from "../util/lru-map.js";

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

/** Hosts remembered at once: a registry client talks to a handful, whatever names CONNECTs carry. */
const MAX_HOSTS = 1000;

/**
 * A circuit breaker per upstream host. After `threshold` consecutive failures a
 * host is down: requests stop waiting on connect timeouts and go straight to the
 * cache, while a background probe checks the host every `probeInterval` and
 * closes the circuit when it answers again.
 *
 * Hosts are remembered least recently used first out, up ones before down ones: forgetting
 * an up host costs nothing, forgetting a down one makes its next requests wait on it again.
 */
export class UpstreamHealth {
  private readonly hosts: LruMap<string, HostHealth>;
  private readonly probes = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly threshold: number,
    private readonly probeInterval: number,
    private readonly probe: (authority: string) => Promise<boolean>,
    private readonly logger: Logger,
    capacity = MAX_HOSTS,
  ) {
    this.hosts = new LruMap(capacity, { evictable: (h) => h.state === "up", onEvict: (host) => this.cancelProbe(host) });
  }

  isDown(authority: string): boolean {
    return this.hosts.peek(authority)?.state === "down";
  }

  isRateLimited(authority: string): boolean {
    return this.hosts.peek(authority)?.rateLimited === true;
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
      this.scheduleProbe(health);
    } else {
      this.logger.warn(fields, "upstream recovered");
      this.cancelProbe(health.host);
    }
  }

  private cancelProbe(authority: string): void {
    clearTimeout(this.probes.get(authority));
    this.probes.delete(authority);
  }

  private scheduleProbe(health: HostHealth): void {
    const authority = health.host;
    const timer = setTimeout(() => {
      const settle = (ok: boolean): void => {
        // Forgotten while the probe ran (evicted, perhaps tracked anew since): this chain ends.
        if (this.hosts.peek(authority) !== health || health.state !== "down") return;
        if (ok) this.recordSuccess(authority);
        else this.scheduleProbe(health);
      };
      this.probe(authority).then(settle, () => settle(false));
    }, this.probeInterval);
    timer.unref();
    this.probes.set(authority, timer);
  }
}

/** The background probe over `send`: any answer below 500 to GET /v2/ means the registry is back. */
export function registryProbe(send: Send): (authority: string) => Promise<boolean> {
  return async (authority) => {
    const response = await send({ ...parseAuthority(authority), method: "GET", path: "/v2/", headers: {} });
    await response.body.dump();
    return response.statusCode < 500;
  };
}
