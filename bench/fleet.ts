import { rmSync } from "node:fs";
import type { TestEnvironment } from "../test/e2e/harness/environment.js";
import { fleetArgs } from "../test/e2e/harness/fleet-args.js";
import { freePort, waitFor } from "../test/e2e/harness/ports.js";
import { TestRedis } from "../test/e2e/harness/redis.js";
import type { RegcacheProcess } from "../test/e2e/harness/regcache-process.js";
import { TestSwift } from "../test/e2e/harness/swift.js";

export interface SharedTierReads {
  /** A replica with an empty disk reading the blob from the object store (MB/s). */
  fromStore: number[];
  /** The same replica reading it again, from its local tier (MB/s). */
  localAfter: number[];
}

/**
 * Issue 19's figure: the first read of a blob through a replica that lacks it, from the fleet's
 * object store (Swift's S3 API here), against the next read of it from that replica's disk.
 */
export async function measureSharedTierReads(env: TestEnvironment, runs: number, curlBlob: (proxy: RegcacheProcess) => Promise<number>): Promise<SharedTierReads> {
  const swift = new TestSwift(env.path("bench-swift"));
  const redis = new TestRedis();
  await Promise.all([swift.start(), redis.start()]);
  try {
    const replica = async (name: string): Promise<RegcacheProcess> => {
      const proxy = env.regcache(name, ["--log-level", "info", ...fleetArgs(swift, redis, await freePort(), "bench")], { env: swift.credentialsEnv });
      await proxy.start();
      return proxy;
    };
    const filler = await replica("fleet-filler");
    await curlBlob(filler);
    await waitFor(async () => ((await (await fetch(`${filler.proxyUrl}/api/stats`)).json()) as { shared: { uploads: { uploaded: number } } }).shared.uploads.uploaded >= 1, 120_000, "the blob's upload");
    await filler.stop();
    const reads: SharedTierReads = { fromStore: [], localAfter: [] };
    for (let i = 0; i < runs; i++) {
      const fresh = await replica(`fleet-reader-${i}`);
      reads.fromStore.push(await curlBlob(fresh));
      reads.localAfter.push(await curlBlob(fresh));
      await fresh.stop();
      rmSync(fresh.dataDir, { recursive: true, force: true });
    }
    return reads;
  } finally {
    await swift.stop();
    await redis.stop();
  }
}
