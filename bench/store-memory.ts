/**
 * Peak memory of a fleet replica with an empty disk while many clients read different blobs that
 * only the object store holds (a new replica, a rollout): the blobs are filled and uploaded
 * through one replica, then read at once through a fresh one, twice.
 *
 *   npm run bench:store-memory     (BENCH_READS=16 blobs of BENCH_MB=40)
 */
import { readFileSync } from "node:fs";
import { TestEnvironment } from "../test/e2e/harness/environment.js";
import { fleetArgs } from "../test/e2e/harness/fleet-args.js";
import { freePort, waitFor } from "../test/e2e/harness/ports.js";
import { TestRedis } from "../test/e2e/harness/redis.js";
import type { RegcacheProcess } from "../test/e2e/harness/regcache-process.js";
import { TestSwift } from "../test/e2e/harness/swift.js";
import { pushBlob, throughRegcache, uploadsDone, type BenchBlob } from "./fill-cpu.js";

const READS = Number(process.env.BENCH_READS ?? 16);
const MB = Number(process.env.BENCH_MB ?? 40);

const peakMiB = (pid: number): number => Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024;

async function main(): Promise<void> {
  const env = new TestEnvironment("bench-store-memory");
  const swift = new TestSwift(env.path("swift"));
  const index = new TestRedis();
  try {
    await env.start();
    await Promise.all([swift.start(), index.start()]);
    const blobs: BenchBlob[] = [];
    for (let i = 0; i < READS; i++) blobs.push(await pushBlob(env, `bench/store-${i}`, MB));
    const replica = async (name: string): Promise<RegcacheProcess> => {
      const proxy = env.regcache(name, ["--log-level", "info", ...fleetArgs(swift, index, await freePort(), "store-memory")], { env: swift.credentialsEnv });
      await proxy.start();
      return proxy;
    };
    const filler = await replica("filler");
    for (const b of blobs) await throughRegcache(filler, b);
    await waitFor(async () => (await uploadsDone(filler)) >= READS, 600_000, "the uploads");
    await filler.stop();
    for (let run = 1; run <= 2; run++) {
      const reader = await replica(`reader-${run}`);
      const idle = peakMiB(reader.pid!);
      const started = Date.now();
      await Promise.all(blobs.map((b) => throughRegcache(reader, b)));
      process.stdout.write(`${READS} reads at once of ${MB} MB blobs from the object store, run ${run}: peak RSS ${idle.toFixed(0)} MiB idle → ${peakMiB(reader.pid!).toFixed(0)} MiB (${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
      await reader.stop();
    }
  } finally {
    await Promise.all([swift.stop(), index.stop()]).catch(() => undefined);
    await env.cleanup();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
