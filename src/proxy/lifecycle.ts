import type { Socket } from "node:net";

/**
 * Tracks requests in flight and whether the process is draining, so SIGTERM can
 * turn readiness off, let a load balancer notice, and wait for responses to finish.
 */
export class Lifecycle {
  draining = false;
  private active = 0;
  private idleWaiters: (() => void)[] = [];
  private readonly tunnels = new Set<Socket>();

  /** A client's CONNECT socket, watched so shutdown can wait for its last bytes to leave. */
  trackTunnel(socket: Socket): void {
    this.tunnels.add(socket);
    socket.once("close", () => this.tunnels.delete(socket));
  }

  /**
   * A response counts as done when its last byte reaches the client's socket, not when
   * the handler finished: bytes still travel the tunnel behind a slow client. Waits until
   * no tunnel has written anything for `quietMs` (or the deadline).
   */
  async waitTunnelsQuiet(quietMs: number, deadline: number): Promise<boolean> {
    let last = new Map([...this.tunnels].map((s) => [s, s.bytesWritten]));
    let quietSince = Date.now();
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      const now = new Map([...this.tunnels].map((s) => [s, s.bytesWritten]));
      const moved = [...now].some(([s, written]) => last.get(s) !== written || s.writableLength > 0);
      if (moved) quietSince = Date.now();
      else if (Date.now() - quietSince >= quietMs) return true;
      last = now;
    }
    return false;
  }

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
