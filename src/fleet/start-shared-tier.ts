import type { SharedConfig } from "../config/config.js";
import type { Logger } from "../log/logger.js";
import { FleetRecords } from "./fleet-records.js";
import { ObjectEvictor } from "./object-evictor.js";
import { RedisFleetIndex } from "./redis-fleet-index.js";
import { S3ObjectStore } from "./s3-object-store.js";
import { SharedTier } from "./shared-tier.js";

/** The object store is given this long to connect and to answer a request: past it, the replica goes on without it. */
const OBJECT_STORE_TIMEOUTS = { connectMs: 3_000, requestMs: 30_000 };
const DEFAULT_REGION = "us-east-1";

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
        { bucket: store.bucket, prefix: store.prefix, endpoint: store.endpoint, forcePathStyle: store.forcePathStyle, region: store.region ?? process.env.AWS_REGION ?? DEFAULT_REGION, timeouts: OBJECT_STORE_TIMEOUTS },
        logger,
      )
    : undefined;
  const tier = new SharedTier(objects, index, advertise, logger);
  const evictor = objects && index && store ? new ObjectEvictor(objects, index, store.maxBytes, (n) => (tier.stats.evictions += n), logger) : undefined;
  evictor?.start();
  logger.info({ blobStore: store ? `s3://${store.bucket}/${store.prefix}` : undefined, s3Endpoint: store?.endpoint, index: index ? "redis" : undefined, shareConfirmations }, "fleet shared tier configured");
  return {
    tier,
    records: index ? new FleetRecords(index, shareConfirmations) : undefined,
    async close() {
      evictor?.stop();
      tier.close();
      await index?.close();
    },
  };
}
