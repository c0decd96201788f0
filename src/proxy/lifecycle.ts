/**
 * Tracks requests in flight and whether the process is draining, so SIGTERM can
 * turn readiness off, let a load balancer notice, and wait for responses to finish.
 */
export class Lifecycle {
  draining = false;
  private active = 0;
  private idleWaiters: (() => void)[] = [];

  get activeRequests(): number {
    return this.active;
  }

  begin(): void {
    this.active += 1;
  }

  end(): void {
    this.active -= 1;
    if (this.active === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  /** Resolves when no request is in flight, or after `timeoutMs`; true if it went idle. */
  async waitIdle(timeoutMs: number): Promise<boolean> {
    if (this.active === 0) return true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }
}
