import { execFile } from "node:child_process";
import { readFileSync, rmSync, mkdirSync } from "node:fs";
import { promisify } from "node:util";
import { TestEnvironment } from "../test/e2e/harness/environment.js";
const exec = promisify(execFile);
const env = new TestEnvironment("expb");
await env.start();
const img = await env.pushImage("bench/blob", "1", [200e6]);
const blob = img.layerDigests[0]!;
const warmup = env.regcache("w", ["--log-level", "info"]); await warmup.start(); await warmup.stop();
const cpu = (pid: number) => { const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" "); return `user ${Number(f[11]) / 100} sys ${Number(f[12]) / 100}`; };
const out = "/tmp/exp-prof"; rmSync(out, { recursive: true, force: true }); mkdirSync(out);
const curl = async (proxy: any) => {
  const { stdout } = await exec("curl", ["-sf", "-o", "/dev/null", "-w", "%{time_total} %{size_download}", "-x", proxy.proxyUrl, "--cacert", proxy.caFile, `https://quay.test/v2/bench/blob/blobs/${blob}`]);
  const [s, b] = stdout.split(" ").map(Number); return `${(b! / s! / 1e6).toFixed(0)} MB/s`;
};
for (const prof of [false, true]) {
  if (prof) process.env.REGCACHE_NODE_ARGS = `--cpu-prof --cpu-prof-dir=${out} --cpu-prof-name=cold.cpuprofile`;
  const proxy = env.regcache(`p${prof}`, ["--log-level", "info", ...(process.env.EXTRA ?? "").split(" ").filter(Boolean)]);
  await proxy.start();
  const before = cpu(proxy.pid!);

  console.log("cold", await curl(proxy), "proxy cpu before", before, "after", cpu(proxy.pid!));
  try { console.log("warm", await curl(proxy), cpu(proxy.pid!)); } catch (e) { console.log("WARM FAILED", String(e).slice(0, 200)); await new Promise((r) => setTimeout(r, 500)); for (const l of proxy.rawOutput) console.log(l.slice(0, 1500)); }
  await proxy.stop();
  delete process.env.REGCACHE_NODE_ARGS;
  const { stdout } = await exec("curl", ["-sf", "-o", "/dev/null", "-w", "%{time_total} %{size_download}", "--cacert", env.pki.caCert, `https://${env.registry.url}/v2/bench/blob/blobs/${blob}`]);
  const [s, b] = stdout.split(" ").map(Number); console.log("direct", (b! / s! / 1e6).toFixed(0), "MB/s");
  if (prof) {
    const p = JSON.parse(readFileSync(`${out}/cold.cpuprofile`, "utf8"));
    const where = new Map<number, string>(); for (const n of p.nodes) where.set(n.id, `${n.callFrame.functionName || "(anon)"} ${n.callFrame.url.replace(/^.*node_modules\//, "").replace(/^file:.*dist\//, "")}:${n.callFrame.lineNumber}`);
    let ts = p.startTime; const tot = new Map<string, number>();
    p.samples.forEach((id: number, i: number) => { ts += p.timeDeltas[i]; if (ts < p.endTime - 1e9 * 0) { const k = where.get(id)!; tot.set(k, (tot.get(k) ?? 0) + p.timeDeltas[i] / 1000); } });
    console.log([...tot].filter(([k]) => !k.startsWith("(idle")).sort((a, b) => b[1] - a[1]).slice(0, 25).map(([k, v]) => `${v.toFixed(0).padStart(6)} ${k}`).join("\n"));
  }
}
await env.cleanup();
