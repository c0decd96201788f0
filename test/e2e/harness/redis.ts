import { spawn, type ChildProcess } from "node:child_process";
import { freePort, stopProcess, waitForListening } from "./ports.js";

/**
 * A throwaway redis-server on loopback, for the fleet index: no persistence (the tests want an
 * empty store on restart), and signals to play the failures a shared index must survive.
 */
export class TestRedis {
  private child: ChildProcess | undefined;
  port = 0;

  constructor(private readonly password?: string) {}

  get url(): string {
    const auth = this.password === undefined ? "" : `:${encodeURIComponent(this.password)}@`;
    return `redis://${auth}127.0.0.1:${this.port}`;
  }

  /** On `port`, or on a free one. */
  async start(port?: number): Promise<void> {
    this.port = port ?? (await freePort());
    await this.spawn();
  }

  /** Starts it again on the same port (after stop or kill), as Redis coming back would. */
  async restart(): Promise<void> {
    await this.kill();
    await this.spawn();
  }

  /** Shuts it down politely (SIGTERM). */
  async stop(): Promise<void> {
    await stopProcess(this.child, "SIGTERM");
  }

  /** Takes it away at once, as a crashed or unreachable server. */
  async kill(): Promise<void> {
    this.resume();
    await stopProcess(this.child, "SIGKILL");
  }

  /** Freezes it: connections stay open and commands get no answer, as a stalled server. */
  pause(): void {
    this.child?.kill("SIGSTOP");
  }

  resume(): void {
    this.child?.kill("SIGCONT");
  }

  private async spawn(): Promise<void> {
    const args = ["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
    if (this.password !== undefined) args.push("--requirepass", this.password);
    this.child = spawn("redis-server", args, { stdio: "ignore" });
    await waitForListening(this.port, 10_000, "redis-server");
  }
}
