import { DEFAULTS, type SharedConfig } from "../config/config.js";
import type { Logger } from "../log/logger.js";
import { FleetRecords } from "./fleet-records.js";
import { ObjectEvictor } from "./object-evictor.js";
import { RedisFleetIndex } from "./redis-fleet-index.js";
import { S3ObjectStore } from "./s3-object-store.js";
import { SharedTier } from "./shared-tier.js";

/**
 * A client waits on a HEAD or GET of the store: 5 s for its answer, then upstream serves instead.
 * Uploads only must not stall: 30 s without a byte moving fails them (they are retried).
 */
const OBJECT_STORE_TIMEOUTS = { connectMs: 3_000, requestMs: 30_000, answerMs: 5_000 };
/** How often a part marked down is asked whether it is back: /readyz clears within this and one answer's time. */
const PROBE_DOWN_EVERY_MS = 5_000;

export interface RunningSharedTier {
  tier: SharedTier;
  /** The records the local index writes through (absent without --index). */
  records: FleetRecords | undefined;
  close(): Promise<void>;
}

/**
 * The fleet's parts from the config: neither the object store nor the index needs to be reachable
 * at start (a replica starting during their outage serves as a single replica until they return).
 */
export async function createSharedTier(config: SharedConfig, advertise: string | undefined, shareConfirmations: boolean, logger: Logger): Promise<RunningSharedTier> {
  const index = config.index ? await RedisFleetIndex.open(config.index, logger) : undefined;
  const store = config.blobStore;
  const objects = store
    ? new S3ObjectStore(
        { bucket: store.bucket, prefix: store.prefix, endpoint: store.endpoint, forcePathStyle: store.forcePathStyle, region: store.region ?? process.env.AWS_REGION ?? DEFAULTS.s3Region, timeouts: OBJECT_STORE_TIMEOUTS },
        logger,
      )
    : undefined;
  const tier = new SharedTier(objects, index, advertise, logger);
  const evictor = objects && index && store ? new ObjectEvictor(
          objects,
          index,
          { maxBytes: store.maxBytes },
          { evicted: (n) => (tier.stats.evictions += n), reindexed: (n) => (tier.stats.reindexed += n) },
          logger,
        ) : undefined;
  evictor?.start();
  let probe: NodeJS.Timeout | undefined;
  let closed = false;
  const scheduleProbe = (): void => {
    probe = setTimeout(() => void tier.probeDown().finally(() => closed || scheduleProbe()), PROBE_DOWN_EVERY_MS);
    probe.unref();
  };
  scheduleProbe();
  logger.info({ blobStore: store ? `s3://${store.bucket}/${store.prefix}` : undefined, s3Endpoint: store?.endpoint, index: index ? "redis" : undefined, shareConfirmations }, "fleet shared tier configured");
  return {
    tier,
    records: index ? new FleetRecords(index, shareConfirmations) : undefined,
    async close() {
      closed = true;
      clearTimeout(probe);
      evictor?.stop();
      tier.close();
      await index?.close();
    },
  };
}
