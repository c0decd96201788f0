import type { ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { RequestLogFields } from "../registry/request-context.js";

/**
 * Tracks requests in flight and whether the process is draining, so SIGTERM can
 * turn readiness off, let a load balancer notice, and wait for responses to finish.
 */
export class Lifecycle {
  draining = false;
  /** Each request in flight, by its log fields: what shutdown names, and cuts, when the grace runs out. */
  private readonly active = new Map<RequestLogFields, ServerResponse>();
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
    let quietSince = performance.now();
    while (performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      const now = new Map([...this.tunnels].map((s) => [s, s.bytesWritten]));
      const moved = [...now].some(([s, written]) => last.get(s) !== written || s.writableLength > 0);
      if (moved) quietSince = performance.now();
      else if (performance.now() - quietSince >= quietMs) return true;
      last = now;
    }
    return false;
  }

  get activeRequests(): number {
    return this.active.size;
  }

  /** The requests still in flight. */
  inFlight(): RequestLogFields[] {
    return [...this.active.keys()];
  }

  /** Ends every request still in flight, each marked in its own log line as cut at shutdown. */
  cutAll(): void {
    for (const [log, res] of this.active) {
      log.cutAtShutdown = true;
      res.destroy();
    }
  }

  begin(log: RequestLogFields, res: ServerResponse): void {
    this.active.set(log, res);
  }

  end(log: RequestLogFields): void {
    this.active.delete(log);
    if (this.active.size === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  /** Resolves when no request is in flight, or after `timeoutMs`; true if it went idle. */
  async waitIdle(timeoutMs: number): Promise<boolean> {
    if (this.active.size === 0) return true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }
}
