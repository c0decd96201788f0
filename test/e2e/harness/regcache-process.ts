import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { stopProcess, waitFor } from "./ports.js";

/** The checkout's root: the nearest ancestor with package.json (the harness also runs compiled, from bench/.build). */
export const REPO_ROOT = findRoot(path.dirname(fileURLToPath(import.meta.url)));

function findRoot(start: string): string {
  for (let dir = start; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, "package.json"))) return dir;
  }
  throw new Error(`no package.json above ${start}`);
}
export const CLI = path.join(REPO_ROOT, "dist/cli/main.js");

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A real `regcache serve` process on 127.0.0.1, its JSON log lines collected for assertions. */
export class RegcacheProcess {
  private child: ChildProcess | undefined;
  readonly logs: LogLine[] = [];
  readonly rawOutput: string[] = [];
  port = 0;
  private buffer = "";

  constructor(
    readonly dataDir: string,
    readonly certsDir: string,
    readonly extraArgs: string[] = [],
    readonly env: Record<string, string> = {},
    /** The Node.js binary that runs regcache: this one's unless a benchmark compares runtimes. */
    readonly node = process.execPath,
    /** A command that runs Node.js for regcache, its arguments then Node's (e.g. dns-server.ts's withResolvConf). */
    readonly wrapper: string[] = [],
  ) {}

  get proxyUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get caFile(): string {
    return path.join(this.certsDir, "ca.crt");
  }

  async start(port = 0): Promise<void> {
    this.logs.length = 0;
    // REGCACHE_NODE_ARGS lets benchmarks profile the proxy (e.g. "--cpu-prof --cpu-prof-dir=...").
    const nodeArgs = (process.env.REGCACHE_NODE_ARGS ?? "").split(" ").filter(Boolean);
    const args = [...nodeArgs, CLI, "serve", "--listen", `127.0.0.1:${port}`, "--data-dir", this.dataDir, "--certs-dir", this.certsDir, "--log-level", "debug", "--drain-delay", "0s", ...this.extraArgs];
    const [command, ...commandArgs] = [...this.wrapper, this.node, ...args];
    const child = spawn(command!, commandArgs, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...this.env } });
    this.child = child;
    let exitError = "";
    child.stderr!.on("data", (c: Buffer) => {
      exitError += c.toString();
      this.rawOutput.push(c.toString());
    });
    child.stdout!.on("data", (chunk: Buffer) => {
      this.buffer += chunk.toString();
      let newline: number;
      while ((newline = this.buffer.indexOf("\n")) >= 0) {
        const line = this.buffer.slice(0, newline);
        this.buffer = this.buffer.slice(newline + 1);
        this.rawOutput.push(line);
        try {
          this.logs.push(JSON.parse(line) as LogLine);
        } catch {
          this.logs.push({ level: 0, msg: line });
        }
      }
    });
    const exited = new Promise<never>((_, reject) =>
      child.once("exit", (code) => reject(new Error(`regcache exited with ${code} before listening; stderr: ${exitError}`))),
    );
    exited.catch(() => undefined);
    await Promise.race([
      exited,
      waitFor(
        () => {
          const listening = this.logs.find((l) => l.msg === "regcache listening");
          if (listening) this.port = Number(String(listening.listen).split(":").pop());
          return listening !== undefined;
        },
        30_000,
        "regcache to listen",
      ),
    ]);
  }

  /**
   * The first log line matching `predicate`, waiting for it: pino writes asynchronously,
   * so a line can arrive a moment after the client saw the response.
   */
  async waitForLog(predicate: (line: LogLine) => boolean, timeoutMs = 5_000): Promise<LogLine> {
    let found: LogLine | undefined;
    await waitFor(() => (found = this.logs.find(predicate)) !== undefined, timeoutMs, "a log line");
    return found!;
  }

  /** Waits until `count` request lines have arrived (see waitForLog). */
  async waitForRequestLogs(count: number, timeoutMs = 5_000): Promise<LogLine[]> {
    await waitFor(() => this.requestLogs().length >= count, timeoutMs, `${count} request log lines`);
    return this.requestLogs();
  }

  requestLogs(): LogLine[] {
    return this.logs.filter((l) => l.msg === "request");
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Whether the process is alive (it may have exited on its own). */
  get running(): boolean {
    try {
      process.kill(this.child?.pid ?? 0, 0);
      return this.child?.pid !== undefined;
    } catch {
      return false;
    }
  }

  /** SIGTERM and wait for exit; returns the exit code. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<number | null> {
    const code = await stopProcess(this.child, signal);
    this.child = undefined;
    return code;
  }
}
