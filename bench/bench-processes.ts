import { spawn } from "node:child_process";
import { once } from "node:events";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** A server script of bench/ run as its own process: it prints its port, then serves until stopped. */
export interface ServerProcess {
  port: number;
  pid: number;
  stop(): void;
}

export async function startServerProcess(script: string, args: string[], node = process.execPath): Promise<ServerProcess> {
  const file = path.join(path.dirname(fileURLToPath(import.meta.url)), script);
  const child = spawn(node, [file, ...args], { stdio: ["ignore", "pipe", "inherit"] });
  process.once("exit", () => child.kill());
  const [data] = (await once(child.stdout!, "data")) as [Buffer];
  return { port: Number(data.toString().trim()), pid: child.pid!, stop: () => child.kill() };
}

/** The bare node:https server of ceiling-server.ts, serving `file` at /blob. */
export async function startCeiling(file: string, keyFile: string, certFile: string, node = process.execPath): Promise<ServerProcess & { url: string }> {
  const server = await startServerProcess("ceiling-server.js", [file, keyFile, certFile], node);
  return { ...server, url: `https://127.0.0.1:${server.port}/blob` };
}

/** The arguments that make replica `i` of those on peer ports `ports` a peer of the others. */
export function peerArgs(ports: number[], i: number): string[] {
  return ["--peer-listen", `127.0.0.1:${ports[i]}`, "--advertise", `127.0.0.1:${ports[i]}`, ...ports.filter((_, j) => j !== i).flatMap((p) => ["--peer", `127.0.0.1:${p}`])];
}
