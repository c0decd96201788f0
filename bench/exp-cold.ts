import { execFile } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { promisify } from "node:util";
import { goClientEnv } from "../test/e2e/harness/clients.js";
import { TestEnvironment } from "../test/e2e/harness/environment.js";
const exec = promisify(execFile);
const SCALE = Number(process.env.BENCH_SCALE ?? 0.1);
const env = new TestEnvironment("exp");
await env.start();
const image = await env.pushImage("bench/big", "1", [150, 120, 80].map((m) => Math.round(m * 1e6 * SCALE)));
const cpu = (pid: number) => { const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" "); return Number(f[11]) / 100 + Number(f[12]) * 1000; };
const regPid = (env.registry as any).child.pid as number;
const pull = async (ref: string, e: NodeJS.ProcessEnv, pids: number[]) => {
  const dest = env.path("d");
  rmSync(dest, { recursive: true, force: true });
  const before = pids.map(cpu);
  const t0 = Date.now();
  const { stderr } = await exec("bash", ["-c", `time skopeo --insecure-policy copy --retry-times 0 --src-cert-dir ${env.pki.certDir} docker://${ref} dir:${dest} >/dev/null`], { env: e });
  const wall = (Date.now() - t0) / 1000;
  console.log(`wall ${wall}s; skopeo ${stderr.trim().split("\n").slice(-2).join(" ")}; cpu of [registry, proxy]: ${pids.map((p, i) => (cpu(p) - before[i]!).toFixed(2)).join(" ")}`);
};
for (let i = 0; i < 2; i++) {
  await pull(`${env.registry.url}/bench/big:1`, { ...process.env, HTTPS_PROXY: "" }, [regPid]);
  const proxy = env.regcache(`c${i}`, ["--log-level", "info", ...(process.env.EXTRA ?? "").split(" ").filter(Boolean)]);
  await proxy.start();
  await pull(image.ref, goClientEnv(proxy), [regPid, proxy.pid!]);
  await pull(image.ref, goClientEnv(proxy), [regPid, proxy.pid!]);
  await proxy.stop();
}
await env.cleanup();
