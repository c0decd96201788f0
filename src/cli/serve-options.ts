import { isIP } from "node:net";
import { Option } from "commander";
import { DEFAULTS, type ClusterConfig, type Config, type MirrorConfig, type OfflineAccess, type SharedConfig } from "../config/config.js";
import { parseBlobStoreUrl } from "../config/blob-store-url.js";
import { redactUrl } from "../config/redact-url.js";
import { peerAddress } from "../cluster/membership.js";
import type { LogLevel } from "../log/logger.js";
import { parseUpstreamAuthority } from "../mirror/mirror-target.js";
import { OptionError, parseDuration, parseHostPattern, parseHostPort, parsePort, parseResolve, parseSize, splitList, type HostPort } from "../config/parse.js";

/** Repeatable option whose environment variable holds a comma-separated list. */
function listOption(flags: string, description: string, env?: string): Option {
  // Commander gives "--no-*" options a default of true; a list starts empty whatever came before.
  const option = new Option(flags, description).argParser((value: string, previous: unknown) => [...(Array.isArray(previous) ? (previous as string[]) : []), ...splitList(value)]);
  return env ? option.env(env) : option;
}

/** --admin-token of `serve` and of the `cache` commands: on one host, one REGCACHE_ADMIN_TOKEN serves both. */
export function adminTokenOption(description: string): Option {
  return new Option("--admin-token <file>", description).env("REGCACHE_ADMIN_TOKEN");
}

export const LOG_LEVELS: LogLevel[] = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

/** Every `serve` option, each with its REGCACHE_* variable; README's table is written from this list. */
export function serveOptions(): Option[] {
  return [
    new Option("--listen <host:port>", "address and port of the proxy").env("REGCACHE_LISTEN").default(DEFAULTS.listen),
    new Option("--admin-listen <host:port>", "a separate address for the stats page, /api/stats, /metrics and the cache admin API, which the proxy port then no longer serves (default: the proxy port)").env("REGCACHE_ADMIN_LISTEN"),
    new Option("--data-dir <dir>", "cache directory (blobs, index, temp files)").env("REGCACHE_DATA_DIR").default(DEFAULTS.dataDir),
    new Option("--certs-dir <dir>", "directory of ca.crt and ca.key; created on first start, may be read-only once they exist").env("REGCACHE_CERTS_DIR").default(DEFAULTS.certsDir),
    listOption("--upstream-ca <file>", "extra CA (PEM) trusted for upstream registries, on top of the system store; repeatable", "REGCACHE_UPSTREAM_CA"),
    listOption("--resolve <host:port=addr:port>", "connect to ADDR:PORT whenever a client asks for HOST:PORT; repeatable", "REGCACHE_RESOLVE"),
    listOption("--allow-port <port>", `CONNECT ports allowed (default ${DEFAULTS.allowPorts.join(",")}); repeatable`, "REGCACHE_ALLOW_PORT"),
    listOption("--no-intercept <pattern>", "hosts (name or *.domain) tunnelled as plain TCP, TLS untouched; repeatable", "REGCACHE_NO_INTERCEPT"),
    new Option("--log-level <level>", "log level").env("REGCACHE_LOG_LEVEL").choices(LOG_LEVELS).default(DEFAULTS.logLevel),
    new Option("--max-cache-size <size>", "size bound of the cache, e.g. 50GiB; least recently used blobs are evicted").env("REGCACHE_MAX_CACHE_SIZE").default(DEFAULTS.maxCacheSize),
    new Option("--max-blob-size <size>", "cap on a body whose size upstream does not declare (default: --max-cache-size); larger bodies are cut and not cached").env("REGCACHE_MAX_BLOB_SIZE"),
    new Option("--min-download-rate <size>", "bytes per second below which a download, sustained over a minute, is aborted").env("REGCACHE_MIN_DOWNLOAD_RATE").default(DEFAULTS.minDownloadRate),
    new Option("--abandon-after <duration>", "a download no client reads any more is aborted after this long, unless it is half done").env("REGCACHE_ABANDON_AFTER").default(DEFAULTS.abandonAfter),
    new Option("--verify-interval <duration>", "cached files are re-hashed when served (and by a background scrub) if not verified for this long, and once after each start").env("REGCACHE_VERIFY_INTERVAL").default(DEFAULTS.verifyInterval),
    new Option("--tag-ttl <duration>", "answer tags from the cache without asking upstream for this long; 0 = always revalidate").env("REGCACHE_TAG_TTL").default(DEFAULTS.tagTtl),
    new Option("--connect-timeout <duration>", "upstream connect timeout").env("REGCACHE_CONNECT_TIMEOUT").default(DEFAULTS.connectTimeout),
    new Option("--headers-timeout <duration>", "upstream response-header timeout").env("REGCACHE_HEADERS_TIMEOUT").default(DEFAULTS.headersTimeout),
    new Option("--body-timeout <duration>", "upstream idle-body timeout (no bytes for this long)").env("REGCACHE_BODY_TIMEOUT").default(DEFAULTS.bodyTimeout),
    new Option("--failure-threshold <n>", "consecutive upstream failures before a host is treated as down").env("REGCACHE_FAILURE_THRESHOLD").default(String(DEFAULTS.failureThreshold)),
    new Option("--probe-interval <duration>", "how often a host that is down is probed").env("REGCACHE_PROBE_INTERVAL").default(DEFAULTS.probeInterval),
    new Option("--shutdown-grace <duration>", "on SIGTERM, how long in-flight responses may take to finish").env("REGCACHE_SHUTDOWN_GRACE").default(DEFAULTS.shutdownGrace),
    new Option("--drain-delay <duration>", "on SIGTERM, how long /readyz fails before new connections are refused").env("REGCACHE_DRAIN_DELAY").default(DEFAULTS.drainDelay),
    new Option("--offline-access <policy>", "who gets cached content while upstream is unreachable: public, all or none (SECURITY.md)").env("REGCACHE_OFFLINE_ACCESS").choices(["public", "all", "none"]).default(DEFAULTS.offlineAccess),
    new Option("--public-ttl <duration>", "how long an anonymous-readability verdict for a repository holds").env("REGCACHE_PUBLIC_TTL").default(DEFAULTS.publicTtl),
    new Option("--auth-ttl <duration>", "how long upstream's yes to a credential for a repository holds").env("REGCACHE_AUTH_TTL").default(DEFAULTS.authTtl),
    new Option("--offline-grace <duration>", "with --offline-access public: how long a confirmed credential is honoured while upstream is down").env("REGCACHE_OFFLINE_GRACE").default(DEFAULTS.offlineGrace),
    new Option("--credentials <file>", "proxy-held upstream credentials (JSON: host -> {username,password} or {token}), used when a client sends none; content they reach becomes readable by every client").env("REGCACHE_CREDENTIALS"),
    new Option("--proxy-auth <file>", "htpasswd file (bcrypt entries) of users allowed to use the proxy; others get 407").env("REGCACHE_PROXY_AUTH"),
    adminTokenOption("bearer token (in this file) every request to the cache admin API (/api/cache/...) must carry, loopback included; without it, only loopback clients may use that API"),
    listOption("--allow-host <pattern>", "only these hosts may be reached (name or *.domain); repeatable", "REGCACHE_ALLOW_HOST"),
    listOption("--deny-host <pattern>", "these hosts are refused with 403; repeatable", "REGCACHE_DENY_HOST"),
    new Option("--deny-private-addresses", "refuse upstreams that resolve to private, loopback or CGNAT addresses (link-local and metadata are always refused)").env("REGCACHE_DENY_PRIVATE_ADDRESSES"),
    new Option("--unpermitted-hosts <action>", "hosts outside the CA's name constraints: tunnel (TLS untouched) or deny").env("REGCACHE_UNPERMITTED_HOSTS").choices(["tunnel", "deny"]).default(DEFAULTS.unpermittedHosts),
    new Option("--max-connections <n>", "client connections accepted at once").env("REGCACHE_MAX_CONNECTIONS").default(String(DEFAULTS.maxConnections)),
    listOption("--peer <host:port>", "another replica's peer address: replicas form one cache; repeatable", "REGCACHE_PEER"),
    new Option("--peers-dns <name>", "a headless Service name whose addresses are the replicas (peer port from --advertise)").env("REGCACHE_PEERS_DNS"),
    new Option("--advertise <host:port>", "this replica's peer address as the others reach it (the pod IP); required with --peer or --peers-dns").env("REGCACHE_ADVERTISE"),
    new Option("--peer-listen <host:port>", "address of the peer channel (mutual TLS), used with --peer, --peers-dns or --index").env("REGCACHE_PEER_LISTEN").default(DEFAULTS.peerListen),
    new Option("--blob-store <url>", "s3://BUCKET/PREFIX: an object store the fleet shares, behind each replica's disk (credentials from the AWS SDK's default chain)").env("REGCACHE_BLOB_STORE"),
    new Option("--s3-endpoint <url>", "URL of an S3-compatible service for --blob-store (default: AWS)").env("REGCACHE_S3_ENDPOINT"),
    new Option("--s3-region <region>", "region of --blob-store (default: AWS_REGION, else us-east-1)").env("REGCACHE_S3_REGION"),
    new Option("--s3-force-path-style", "address the bucket in the path, not the host name (most S3-compatible services)").env("REGCACHE_S3_FORCE_PATH_STYLE"),
    new Option("--blob-store-max-size <size>", "size bound of --blob-store; one replica at a time evicts the least recently read objects (needs --index)").env("REGCACHE_BLOB_STORE_MAX_SIZE").default(DEFAULTS.blobStoreMaxSize),
    new Option("--index <url>", "redis://[:PASSWORD@]HOST:PORT[/DB]: the fleet index (what --blob-store holds, repository links, tag answers, verdicts, fill leases); needs --advertise").env("REGCACHE_INDEX"),
    new Option("--instance-secret-file <file>", "a secret (32 bytes or more) shared by every replica: credential confirmations are then shared through --index (default: a per-replica secret in the data dir)").env("REGCACHE_INSTANCE_SECRET_FILE"),
    new Option("--mirror-listen <host:port>", "also serve as a registry mirror for every upstream on this address (containerd hosts.toml, registries.conf, Docker registry-mirrors; off by default)").env("REGCACHE_MIRROR_LISTEN"),
    listOption("--mirror-name <name>", "a DNS name or IP address nodes reach the mirror by: its TLS certificate, from regcache's CA, names them all; repeatable", "REGCACHE_MIRROR_NAME"),
    new Option("--mirror-plain-http", "the mirror speaks plain HTTP, no TLS (for a cluster network)").env("REGCACHE_MIRROR_PLAIN_HTTP"),
    new Option("--mirror-default-upstream <host[:port]>", "the registry of mirror requests that name none (Docker's, for Docker Hub)").env("REGCACHE_MIRROR_DEFAULT_UPSTREAM").default(DEFAULTS.mirrorDefaultUpstream),
  ];
}

export interface RawServeOptions {
  listen: string;
  adminListen?: string;
  dataDir: string;
  certsDir: string;
  upstreamCa?: string[];
  resolve?: string[];
  allowPort?: string[];
  /** Commander names "--no-intercept <pattern>" after the negated word, and defaults it to true. */
  intercept?: string[] | boolean;
  logLevel: LogLevel;
  maxCacheSize: string;
  maxBlobSize?: string;
  minDownloadRate: string;
  abandonAfter: string;
  verifyInterval: string;
  tagTtl: string;
  connectTimeout: string;
  headersTimeout: string;
  bodyTimeout: string;
  failureThreshold: string;
  probeInterval: string;
  shutdownGrace: string;
  drainDelay: string;
  offlineAccess: OfflineAccess;
  publicTtl: string;
  authTtl: string;
  offlineGrace: string;
  credentials?: string;
  proxyAuth?: string;
  adminToken?: string;
  allowHost?: string[];
  denyHost?: string[];
  denyPrivateAddresses?: boolean;
  unpermittedHosts: "tunnel" | "deny";
  maxConnections: string;
  peer?: string[];
  peersDns?: string;
  advertise?: string;
  peerListen: string;
  blobStore?: string;
  s3Endpoint?: string;
  s3Region?: string;
  s3ForcePathStyle?: boolean;
  blobStoreMaxSize: string;
  index?: string;
  instanceSecretFile?: string;
  mirrorListen?: string;
  mirrorName?: string[];
  mirrorPlainHttp?: boolean;
  mirrorDefaultUpstream: string;
}

function wholeNumber(value: string, flag: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1) throw new OptionError(`${flag} must be a whole number of at least 1, got "${value}"`);
  return n;
}

/** Turns the strings commander collected into a validated Config. Pure. */
export function toConfig(raw: RawServeOptions): Config {
  const threshold = wholeNumber(raw.failureThreshold, "--failure-threshold");
  const positive = (value: string, flag: string): number => {
    const ms = parseDuration(value, flag);
    if (ms <= 0) throw new OptionError(`${flag} must be greater than 0, got "${value}"`);
    return ms;
  };
  const listen = parseHostPort(raw.listen, "--listen", true);
  const adminListen = raw.adminListen === undefined ? undefined : parseHostPort(raw.adminListen, "--admin-listen", true);
  if (adminListen && adminListen.port !== 0 && adminListen.port === listen.port) throw new OptionError(`--admin-listen must be another port than --listen, got "${raw.adminListen}"`);
  const maxCacheSize = parseSize(raw.maxCacheSize, "--max-cache-size");
  if (maxCacheSize <= 0) throw new OptionError(`--max-cache-size must be greater than 0, got "${raw.maxCacheSize}"`);
  return {
    listen,
    adminListen,
    dataDir: raw.dataDir,
    certsDir: raw.certsDir,
    upstreamCaFiles: raw.upstreamCa ?? [],
    resolve: (raw.resolve ?? []).map(parseResolve),
    allowPorts: raw.allowPort && raw.allowPort.length > 0 ? raw.allowPort.map((p) => parsePort(p, "--allow-port")) : [...DEFAULTS.allowPorts],
    noIntercept: (Array.isArray(raw.intercept) ? raw.intercept : []).map((p) => parseHostPattern(p, "--no-intercept")),
    logLevel: raw.logLevel,
    maxCacheSize,
    maxBlobSize: raw.maxBlobSize === undefined ? maxCacheSize : parseSize(raw.maxBlobSize, "--max-blob-size"),
    minDownloadRate: parseSize(raw.minDownloadRate, "--min-download-rate"),
    abandonAfter: positive(raw.abandonAfter, "--abandon-after"),
    verifyInterval: positive(raw.verifyInterval, "--verify-interval"),
    tagTtl: parseDuration(raw.tagTtl, "--tag-ttl"),
    connectTimeout: positive(raw.connectTimeout, "--connect-timeout"),
    headersTimeout: positive(raw.headersTimeout, "--headers-timeout"),
    bodyTimeout: positive(raw.bodyTimeout, "--body-timeout"),
    failureThreshold: threshold,
    probeInterval: positive(raw.probeInterval, "--probe-interval"),
    shutdownGrace: parseDuration(raw.shutdownGrace, "--shutdown-grace"),
    drainDelay: parseDuration(raw.drainDelay, "--drain-delay"),
    offlineAccess: raw.offlineAccess,
    publicTtl: parseDuration(raw.publicTtl, "--public-ttl"),
    authTtl: parseDuration(raw.authTtl, "--auth-ttl"),
    offlineGrace: parseDuration(raw.offlineGrace, "--offline-grace"),
    credentialsFile: raw.credentials,
    proxyAuthFile: raw.proxyAuth,
    adminTokenFile: raw.adminToken,
    allowHosts: (raw.allowHost ?? []).map((p) => parseHostPattern(p, "--allow-host")),
    denyHosts: (raw.denyHost ?? []).map((p) => parseHostPattern(p, "--deny-host")),
    denyPrivateAddresses: raw.denyPrivateAddresses === true,
    unpermittedHosts: raw.unpermittedHosts,
    maxConnections: wholeNumber(raw.maxConnections, "--max-connections"),
    cluster: clusterConfig(raw),
    shared: sharedConfig(raw),
    instanceSecretFile: raw.instanceSecretFile,
    mirror: mirrorConfig(raw),
  };
}

function mirrorConfig(raw: RawServeOptions): MirrorConfig | undefined {
  const names = (raw.mirrorName ?? []).map((name) => parseMirrorName(name));
  const plainHttp = raw.mirrorPlainHttp === true;
  const defaultUpstream = parseUpstreamAuthority(raw.mirrorDefaultUpstream.trim().toLowerCase());
  if (!defaultUpstream) throw new OptionError(`--mirror-default-upstream must be a registry HOST or HOST:PORT, got "${raw.mirrorDefaultUpstream}"`);
  if (!raw.mirrorListen) {
    if (names.length > 0 || plainHttp) throw new OptionError(`${names.length > 0 ? "--mirror-name" : "--mirror-plain-http"} applies to --mirror-listen, which is not set`);
    return undefined;
  }
  if (plainHttp && names.length > 0) throw new OptionError("--mirror-name names the mirror's TLS certificate; with --mirror-plain-http there is none");
  if (!plainHttp && names.length === 0) throw new OptionError("--mirror-listen needs --mirror-name (the DNS names or IP addresses nodes reach the mirror by, for its TLS certificate), or --mirror-plain-http");
  return { listen: parseHostPort(raw.mirrorListen, "--mirror-listen", true), names, plainHttp, defaultUpstream };
}

function parseMirrorName(value: string): string {
  const name = value.trim().toLowerCase().replace(/^\[(.*)\]$/, "$1");
  if (isIP(name) === 0 && !/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/.test(name)) {
    throw new OptionError(`--mirror-name must be a DNS name or an IP address, got "${value}"`);
  }
  return name;
}

/** Replicas sharing an index stream each other's fills over the peer channel: --index makes a cluster even without a peer list. */
function clusterConfig(raw: RawServeOptions): ClusterConfig | undefined {
  const peers = (raw.peer ?? []).map((p) => formatPeer(parseHostPort(p, "--peer")));
  if (peers.length === 0 && !raw.peersDns && !raw.index) return undefined;
  if (!raw.advertise) throw new OptionError("--advertise HOST:PORT is required with --peer, --peers-dns or --index: it is how the other replicas reach this one (the pod IP)");
  return { peers, peersDns: raw.peersDns, advertise: formatPeer(parseHostPort(raw.advertise, "--advertise")), listen: parseHostPort(raw.peerListen, "--peer-listen", true) };
}

function sharedConfig(raw: RawServeOptions): SharedConfig | undefined {
  const maxBytes = parseSize(raw.blobStoreMaxSize, "--blob-store-max-size");
  if (maxBytes <= 0) throw new OptionError(`--blob-store-max-size must be greater than 0, got "${raw.blobStoreMaxSize}"`);
  if (!raw.blobStore) {
    for (const [flag, value] of [["--s3-endpoint", raw.s3Endpoint], ["--s3-region", raw.s3Region], ["--s3-force-path-style", raw.s3ForcePathStyle]] as const) {
      if (value !== undefined) throw new OptionError(`${flag} applies to --blob-store, which is not set`);
    }
    if (!raw.index) return undefined;
  }
  if (raw.index !== undefined && !/^rediss?:\/\/[^/]/.test(raw.index)) throw new OptionError(`--index must be a redis:// or rediss:// URL, got "${redactUrl(raw.index)}"`);
  const blobStore = raw.blobStore
    ? {
        ...parseBlobStoreUrl(raw.blobStore),
        endpoint: raw.s3Endpoint,
        forcePathStyle: raw.s3ForcePathStyle === true,
        region: raw.s3Region,
        maxBytes,
      }
    : undefined;
  return { blobStore, index: raw.index };
}

function formatPeer(hp: HostPort): string {
  return peerAddress(hp.host, hp.port);
}
