/**
 * The CPU-per-GB part of the benchmark alone (bench/fill-cpu.ts), for quick checks:
 *
 *   npm run bench:cpu          (BENCH_RUNS=3; BENCH_SCALE=0.25 for a 50 MB blob)
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { TestEnvironment } from "../test/e2e/harness/environment.js";
import { fillCpuRows, measureFillCpu, pushBlob } from "./fill-cpu.js";

const exec = promisify(execFile);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const SCALE = Number(process.env.BENCH_SCALE ?? 1);

async function main(): Promise<void> {
  const env = new TestEnvironment("bench-cpu");
  try {
    await env.start();
    const blob = await pushBlob(env, "bench/blob", 200 * SCALE);
    const twin = await pushBlob(env, "bench/twin", 200 * SCALE);
    const warmup = await pushBlob(env, "bench/warmup", 20 * SCALE);
    const blobFile = env.path("ceiling-blob");
    await exec("curl", ["-sf", "-o", blobFile, "--noproxy", "*", "--cacert", env.pki.caCert, `https://${env.registry.url}/v2/${blob.repo}/blobs/${blob.digest}`]);
    const result = await measureFillCpu(env, blob, twin, warmup, blobFile, RUNS, (m) => process.stderr.write(`[bench] ${m}\n`));
    process.stdout.write(`${fillCpuRows(result, RUNS).join("\n")}\n\nFor this run, ${result.pageReporting}.\n`);
  } finally {
    await env.cleanup();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
