import type { LogLevel } from "../log/logger.js";
import type { HostPort, ResolveRule } from "./parse.js";

/**
 * What to do when upstream cannot confirm a client (offline):
 * - public: serve repositories known to be public, and clients whose credential was
 *   confirmed for the repository within the offline grace period;
 * - all: serve everything cached (a mirror's behaviour: availability over confidentiality);
 * - none: serve only what was confirmed within the normal auth TTL.
 */
export type OfflineAccess = "public" | "all" | "none";

/** Everything `regcache serve` can be told; the CLI fills it from flags and REGCACHE_* variables. */
export interface Config {
  listen: HostPort;
  /** Where the stats page, /api/stats, /metrics and the cache admin API listen; absent: on `listen`. */
  adminListen?: HostPort;
  dataDir: string;
  certsDir: string;
  upstreamCaFiles: string[];
  resolve: ResolveRule[];
  allowPorts: number[];
  noIntercept: string[];
  logLevel: LogLevel;
  maxCacheSize: number;
  /** Cap on a body whose size upstream does not declare (bytes). */
  maxBlobSize: number;
  /** Downloads slower than this (bytes per second) over a minute are aborted. */
  minDownloadRate: number;
  /** A download nobody reads any more is aborted after this long (ms) when far from done. */
  abandonAfter: number;
  /** A cached file is re-hashed when served, and by the background scrub, when not verified for this long (ms). */
  verifyInterval: number;
  /** Tags are answered from the cache without asking upstream for this long (ms); 0 = always revalidate. */
  tagTtl: number;
  connectTimeout: number;
  headersTimeout: number;
  bodyTimeout: number;
  /** Consecutive upstream failures after which a host is treated as down without waiting. */
  failureThreshold: number;
  /** How often a host that is down is probed in the background (ms). */
  probeInterval: number;
  shutdownGrace: number;
  /** On SIGTERM, how long readiness is off before new connections are refused (ms). */
  drainDelay: number;
  offlineAccess: OfflineAccess;
  publicTtl: number;
  authTtl: number;
  offlineGrace: number;
  /** File of proxy-held upstream credentials (host -> username/password or token). */
  credentialsFile?: string;
  /** htpasswd file (bcrypt) of users allowed to use the proxy. */
  proxyAuthFile?: string;
  /** File holding the bearer token of the cache admin API; absent: loopback clients only. */
  adminTokenFile?: string;
  allowHosts: string[];
  denyHosts: string[];
  denyPrivateAddresses: boolean;
  /** What to do with hosts outside the CA's name constraints. */
  unpermittedHosts: "tunnel" | "deny";
  maxConnections: number;
  /** Replicas forming one cache (src/cluster/); absent: this process is the whole cache. */
  cluster?: ClusterConfig;
  /** The fleet's shared tier (src/fleet/): an object store, a shared index, or both; absent: the local disk is the only tier. */
  shared?: SharedConfig;
  /** --instance-secret-file: a secret every replica shares, so that credential confirmations are shared too. */
  instanceSecretFile?: string;
  /** The registry mirror endpoint (src/mirror/); absent: regcache is a proxy only. */
  mirror?: MirrorConfig;
}

export interface MirrorConfig {
  /** --mirror-listen: where runtimes reach the mirror. */
  listen: HostPort;
  /** --mirror-name: the names (DNS or IP) its TLS certificate is valid for; empty with plainHttp. */
  names: string[];
  /** --mirror-plain-http: HTTP without TLS, for a cluster network. */
  plainHttp: boolean;
  /** --mirror-default-upstream: the registry a request naming none is for (Docker's mirror requests). */
  defaultUpstream: HostPort;
}

export interface SharedConfig {
  /** --blob-store s3://BUCKET/PREFIX and its options. */
  blobStore?: BlobStoreConfig;
  /** --index redis://...: the fleet index (rows, links, tag answers, verdicts, leases). */
  index?: string;
}

export interface BlobStoreConfig {
  bucket: string;
  prefix: string;
  /** --s3-endpoint: an S3-compatible service's URL; absent: AWS. */
  endpoint?: string;
  forcePathStyle: boolean;
  /** --s3-region; absent: AWS_REGION, else us-east-1. */
  region?: string;
  /** --blob-store-max-size: the object store's bound, kept by one evictor for the fleet. */
  maxBytes: number;
}

export interface ClusterConfig {
  /** --peer: other replicas' peer addresses, "host:port". */
  peers: string[];
  /** --peers-dns: a headless Service whose addresses are the replicas. */
  peersDns?: string;
  /** --advertise: this replica's peer address as the others reach it. */
  advertise: string;
  /** --peer-listen: where the peer channel listens. */
  listen: HostPort;
}

export const DEFAULTS = {
  listen: "0.0.0.0:3128",
  dataDir: "./data",
  certsDir: "./certs",
  allowPorts: [443],
  logLevel: "info" as LogLevel,
  maxCacheSize: "20GiB",
  minDownloadRate: "10KiB",
  abandonAfter: "30s",
  verifyInterval: "24h",
  tagTtl: "0",
  connectTimeout: "5s",
  headersTimeout: "30s",
  bodyTimeout: "60s",
  failureThreshold: 3,
  probeInterval: "10s",
  // A 150 MB layer finishes at 1.3 MB/s, a slow client's share of a busy link: a rolling update
  // cuts no ordinary pull. Idle replicas exit at once whatever the grace.
  shutdownGrace: "120s",
  drainDelay: "5s",
  offlineAccess: "public" as OfflineAccess,
  publicTtl: "1h",
  authTtl: "60s",
  offlineGrace: "7d",
  unpermittedHosts: "tunnel" as const,
  maxConnections: 4096,
  peerListen: "0.0.0.0:3129",
  blobStoreMaxSize: "1TiB",
  s3Region: "us-east-1",
  /** Docker Hub's API host: Docker asks a mirror for Hub images without naming the registry. */
  mirrorDefaultUpstream: "registry-1.docker.io",
};
