/**
 * The small-request part of the benchmark alone (bench/small-requests.ts), for quick checks:
 *
 *   npm run bench:requests          (BENCH_RUNS=3, BENCH_SECONDS=3 by default)
 *
 * With REGCACHE_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR" the proxy writes a CPU profile at exit.
 */
import { TestEnvironment } from "../test/e2e/harness/environment.js";
import { measureSmallRequests, primeSmallRequests, smallRequestRows, type SmallRequestResult } from "./small-requests.js";

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);

async function main(): Promise<void> {
  const env = new TestEnvironment("bench-requests");
  let results: SmallRequestResult[];
  try {
    await env.start();
    const { proxy, image } = await primeSmallRequests(env);
    results = await measureSmallRequests(env, proxy, image, RUNS, SECONDS);
    await proxy.stop();
  } finally {
    await env.cleanup();
  }
  process.stdout.write(`${smallRequestRows(results, RUNS).join("\n")}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
