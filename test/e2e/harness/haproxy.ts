import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { freePort, stopProcess, waitForListening } from "./ports.js";

/**
 * haproxy in TCP mode in front of regcache replicas, health-checking /readyz:
 * what a Kubernetes Service with readiness probes does, on loopback.
 */
export class TestHaproxy {
  private child: ChildProcess | undefined;
  port = 0;

  /** `balance`: roundrobin, or random: a replica picked at random per connection, as kube-proxy does. */
  constructor(
    private readonly dir: string,
    private readonly backends: number[],
    private readonly balance: "roundrobin" | "random" = "roundrobin",
  ) {}

  get proxyUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.port = await freePort();
    const config = path.join(this.dir, `haproxy-${this.port}.cfg`);
    writeFileSync(
      config,
      [
        "global",
        "  maxconn 4096",
        "defaults",
        "  mode tcp",
        "  timeout connect 2s",
        "  timeout client 5m",
        "  timeout server 5m",
        "  retries 2",
        "  option redispatch",
        "frontend regcache_front",
        `  bind 127.0.0.1:${this.port}`,
        "  default_backend regcache_replicas",
        "backend regcache_replicas",
        `  balance ${this.balance}`,
        "  option httpchk GET /readyz",
        "  http-check expect status 200",
        // As a readiness probe: one slow answer (2 loaded cores) is no verdict. Without "timeout
        // check", a check must finish within "inter", and with "fall 1" one slow /readyz on every
        // replica at once left no server, so haproxy closed new connections (clients saw EOF). A
        // dead replica is refused at once, and "redispatch" sends its connections to another.
        "  timeout check 2s",
        "  default-server inter 300ms fall 3 rise 1",
        ...this.backends.map((p, i) => `  server r${i} 127.0.0.1:${p} check`),
        "",
      ].join("\n"),
    );
    this.child = spawn("haproxy", ["-f", config, "-db"], { stdio: "ignore" });
    await waitForListening(this.port, 10_000, "haproxy");
  }

  async stop(): Promise<void> {
    await stopProcess(this.child, "SIGKILL");
  }
}
