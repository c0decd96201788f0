import type { TestRedis } from "./redis.js";
import type { TestSwift } from "./swift.js";

/**
 * The arguments that make a replica a member of a fleet: the shared object store and index, its
 * peer address, and (`peers`) the other replicas' peer ports, as --peers-dns would name them.
 */
export function fleetArgs(swift: TestSwift, redis: TestRedis, peerPort: number, prefix: string, peers: number[] = []): string[] {
  return [
    "--blob-store", `s3://${swift.bucket}/${prefix}`,
    "--s3-endpoint", swift.endpoint,
    "--s3-force-path-style",
    "--index", redis.url,
    "--advertise", `127.0.0.1:${peerPort}`,
    "--peer-listen", `127.0.0.1:${peerPort}`,
    ...peers.flatMap((p) => ["--peer", `127.0.0.1:${p}`]),
    "--failure-threshold", "2",
    "--probe-interval", "1s",
  ];
}
