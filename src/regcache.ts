import { createHash } from "node:crypto";
import { mkdir, mkdtemp, realpath, rm } from "node:fs/promises";
import { Server as NetServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { AdminAccess, readAdminToken } from "./admin/admin-access.js";
import { cacheAdminRoutes } from "./admin/admin-endpoints.js";
import { CacheAdmin } from "./admin/cache-admin.js";
import { BlobStore } from "./cache/blob-store.js";
import { CacheIndex } from "./cache/cache-index.js";
import { acquireDataDirLock, type DataDirLock } from "./cache/data-dir-lock.js";
import { isFilesystemFault } from "./cache/disk-errors.js";
import { DataDisk } from "./cache/data-disk.js";
import { DataPaths } from "./cache/data-paths.js";
import { recoverDataDir } from "./cache/recovery.js";
import { RecordedTags } from "./cache/recorded-tags.js";
import type { Config } from "./config/config.js";
import type { Logger } from "./log/logger.js";
import { createFrontServer } from "./proxy/front-server.js";
import { createInterceptedRequestHandler } from "./proxy/intercepted-request.js";
import { Lifecycle } from "./proxy/lifecycle.js";
import { MitmInterceptor } from "./proxy/mitm-interceptor.js";
import { createRequestRunner } from "./proxy/request-runner.js";
import type { ConnectPolicy } from "./proxy/connect-policy.js";
import { AnonymousTokens } from "./mirror/anonymous-tokens.js";
import { createMirrorRequestHandler } from "./mirror/mirror-requests.js";
import { MirrorServer, mirrorUrl } from "./mirror/mirror-server.js";
import { loadSetupScript, setupScriptRoute } from "./proxy/setup-script.js";
import { OwnEndpoints } from "./proxy/own-endpoints.js";
import { movedToAdminRoute, startAdminServer } from "./proxy/admin-server.js";
import { createCluster } from "./cluster/start-cluster.js";
import { peerServices } from "./registry/peer-services.js";
import { ContentClearance } from "./registry/content-access.js";
import { ContentHandler } from "./registry/content-handler.js";
import { ContentSources } from "./registry/content-sources.js";
import { PingHandler } from "./registry/ping-handler.js";
import { RegistryHandler } from "./registry/registry-handler.js";
import { TagHandler } from "./registry/tag-handler.js";
import { TagPeers } from "./registry/tag-peers.js";
import { loadOrCreateCa, type CertificateAuthority } from "./tls/ca.js";
import { LeafMinter } from "./tls/leaf-minter.js";
import type { UpstreamClient } from "./upstream/client.js";
import { Dialer } from "./upstream/dialer.js";
import { registryProbe, UpstreamHealth } from "./upstream/health.js";
import { withCredentials, withHealth, withObserver } from "./upstream/layers.js";
import { UpstreamTransport } from "./upstream/transport.js";
import { ResolveMap } from "./upstream/resolve-map.js";
import { loadCredentialsFile, ProxyCredentials } from "./upstream/proxy-credentials.js";
import { AccessControl, emptyAccessCounts } from "./registry/access-control.js";
import { loadInstanceSecret, readSharedSecret } from "./cache/instance-secret.js";
import { ProxyAuth } from "./proxy/proxy-auth.js";
import type { RegistryRequest } from "./registry/request-context.js";
import { configuredHosts, MetricHostLabels } from "./stats/metric-host-labels.js";
import { Metrics } from "./stats/metrics.js";
import { StatsCollector } from "./stats/stats-collector.js";
import { statsRoutes } from "./stats/stats-endpoints.js";
import { RegcacheError, systemReason } from "./errors.js";
import { VERSION } from "./version.js";
import { loadUpstreamTrust } from "./upstream/trust-store.js";

export interface RunningRegcache {
  port: number;
  /** The mirror endpoint's port, when --mirror-listen is set. */
  mirrorPort?: number;
  ca: CertificateAuthority;
  store: BlobStore;
  health: UpstreamHealth;
  /**
   * Readiness off at once; new connections still accepted for `drainDelayMs` (a load
   * balancer needs a moment to notice), then refused; in-flight responses get up to
   * `graceMs` to finish; then everything closes.
   */
  shutdown(drainDelayMs: number, graceMs: number): Promise<void>;
}

/** On shutdown, a tunnel that wrote nothing for this long has delivered its last response. */
const TUNNEL_QUIET_MS = 500;
/** After the grace, how long the sockets of cut requests get to close (and log) before the process goes. */
const CUT_SETTLE_MS = 2_000;

/**
 * The data dir's lock; while its disk is read-only, a lock on this machine named for the
 * directory (its real path: two spellings of one directory are one lock). Failures other than
 * another process holding it name the option.
 */
async function takeDataDirLock(paths: DataPaths): Promise<DataDirLock> {
  const outside = path.join(tmpdir(), `regcache-${createHash("sha256").update(await realpath(paths.root)).digest("hex").slice(0, 16)}.lock`);
  try {
    return await acquireDataDirLock(paths.lockFile, outside);
  } catch (err) {
    if (err instanceof RegcacheError) throw err;
    const where = isFilesystemFault(err) ? `its disk cannot be written, and the lock outside it, ${outside}, cannot be made either` : `the lock ${paths.lockFile} cannot be made`;
    throw new RegcacheError("DATA_DIR", `cannot use --data-dir ${paths.root}: ${where}: ${systemReason(err)}`, { cause: err });
  }
}

/** The composition root: builds every part from the config and starts listening. */
export async function startRegcache(config: Config, logger: Logger): Promise<RunningRegcache> {
  const adminAccess = new AdminAccess(config.adminTokenFile === undefined ? undefined : readAdminToken(config.adminTokenFile));
  const ca = await loadOrCreateCa(config.certsDir);
  logger.info({ caCert: ca.certPath, created: ca.created, subject: ca.subjectCommonName, nameConstraints: ca.permittedDomains, sha256Fingerprint: ca.certificate.fingerprint256 }, "root CA loaded");

  const paths = new DataPaths(config.dataDir);
  await mkdir(paths.root, { recursive: true });
  const lock = await takeDataDirLock(paths);
  const disk = new DataDisk(paths, logger);
  await disk.check();
  if (!lock.onDisk) logger.warn({ lockFile: lock.file }, "the data dir's disk is read-only: its lock is held outside it until the disk can be written");
  // Loaded only when configured: the AWS SDK and the Redis client cost a single node ~30 MB of memory for nothing.
  const fleet = config.shared
    ? await (await import("./fleet/start-shared-tier.js")).createSharedTier(config.shared, config.cluster?.advertise, config.instanceSecretFile !== undefined, logger)
    : undefined;
  const index = await CacheIndex.open(paths.indexFile, logger, fleet?.records);
  await recoverDataDir(paths, index, logger, disk.writable);
  const store = new BlobStore(
    paths,
    index,
    { maxBytes: config.maxCacheSize, maxBlobSize: config.maxBlobSize, minDownloadRate: config.minDownloadRate, abandonedAfterMs: config.abandonAfter, verifyIntervalMs: config.verifyInterval },
    disk,
    logger,
  );
  // Before caching resumes on a disk that can be written again, the lock and the index come back
  // onto it (a repaired filesystem mounted again is a new one: the index's connection to the old
  // one fails, or would), and what a read-only spell left in tmp/ goes.
  disk.onWritable(async (fault) => {
    await lock.returnToDisk();
    if (index.writeFailing || isFilesystemFault(fault)) await index.reopen();
    await store.removeStrayTempFiles();
  });
  await store.fitBoundToDisk();
  store.startScrub();

  const dialer = new Dialer(new ResolveMap(config.resolve), config.denyPrivateAddresses);
  const transport = new UpstreamTransport(dialer, loadUpstreamTrust(config.upstreamCaFiles), {
    connect: config.connectTimeout,
    headers: config.headersTimeout,
    body: config.bodyTimeout,
  });
  const health = new UpstreamHealth(config.failureThreshold, config.probeInterval, registryProbe(transport.send), logger);
  const peers = config.cluster ? createCluster(config.cluster, ca, logger) : undefined;
  const minter = new LeafMinter(ca);
  const lifecycle = new Lifecycle();
  const accessCounts = emptyAccessCounts();
  const heldCredentials = config.credentialsFile ? loadCredentialsFile(config.credentialsFile) : undefined;
  const hostLabels = new MetricHostLabels(paths.metricHostsFile, configuredHosts(config, ca.permittedDomains, heldCredentials?.keys() ?? []), logger);
  await hostLabels.load();
  const metrics = new Metrics({ store, health, accessCounts, minter, lifecycle, hostLabels, dataDir: paths.root, cluster: peers?.cluster, shared: fleet?.tier });
  const credentials = heldCredentials ? new ProxyCredentials(heldCredentials) : undefined;
  // Outermost first: the breaker, then one report per exchange (after any auth dance), then the credentials.
  const upstream: UpstreamClient = {
    request: withHealth(health, withObserver((host, status, failure) => metrics.observeUpstream(host, status, failure), withCredentials(credentials, transport.send))),
  };

  const access = new AccessControl(upstream, index, config.instanceSecretFile ? await readSharedSecret(config.instanceSecretFile) : await loadInstanceSecret(paths.secretFile, logger), config, logger, accessCounts);
  const clearance = new ContentClearance(access, store, fleet?.tier, peers !== undefined);
  const content = new ContentHandler(store, upstream, access, clearance, new ContentSources(upstream, peers?.cluster, fleet?.tier, store, access, logger));
  const recordedTags = new RecordedTags(index);
  const pruned = { tagAnswers: await recordedTags.pruneUncached(), confirmations: await access.pruneConfirmations() };
  if (pruned.tagAnswers + pruned.confirmations > 0) logger.info(pruned, "cache index: rows no answer reads any more pruned");
  const tagPeers = peers ? new TagPeers(peers.cluster, recordedTags, content, access, logger) : undefined;
  const tags = new TagHandler(upstream, store, recordedTags, content, access, config.tagTtl, tagPeers);
  const registry = new RegistryHandler(upstream, content, tags, new PingHandler(upstream, access));
  if (peers && tagPeers) await peers.listen(peerServices(content, tagPeers));

  const startedAt = performance.now();
  const collector = new StatsCollector();
  const observers = [(rr: RegistryRequest, status: number, bytes: number, ms: number) => collector.observe(rr, status, bytes, ms), metrics.observeRequest.bind(metrics)];
  // The library's throwaway CA (see MitmInterceptor.start) is written outside the data disk: that disk may be full.
  const mitmScratch = await mkdtemp(path.join(tmpdir(), "regcache-mitm-"));
  const run = createRequestRunner(registry, logger, lifecycle, observers);
  const interceptor = new MitmInterceptor(minter, mitmScratch, createInterceptedRequestHandler(run), logger);
  await interceptor.start();
  await rm(mitmScratch, { recursive: true, force: true });

  let port = config.listen.port;
  let mirrorPort: number | undefined;
  const statsSources = { collector, store, health, version: VERSION, startedAt, proxyPort: () => port, cluster: peers?.cluster, shared: fleet?.tier };
  const readiness = {
    async notReadyReason() {
      return lifecycle.draining ? "shutting down" : null;
    },
    // A disk that cannot be written still serves what it holds, and streams the rest through: ready, and said so.
    // Each marker clears by itself: the disk's probe (data-disk.ts), the tier's (start-shared-tier.ts), the peers' health checks (membership.ts).
    degraded() {
      const parts: Record<string, string> = {};
      const fault = disk.fault;
      if (fault) parts.dataDisk = `cannot ${fault.action}: ${fault.reason} (since ${new Date(fault.since).toISOString()}); serving cached content, misses uncached`;
      if (fleet?.tier.degraded) Object.assign(parts, fleet.tier.health);
      const members = peers?.cluster.membership.snapshot() ?? [];
      const silent = members.filter((m) => !m.live).length;
      if (silent > 0) parts.peers = `${silent} of ${members.length} not answering`;
      return Object.keys(parts).length > 0 ? parts : undefined;
    },
  };
  const setupScript = setupScriptRoute(
    loadSetupScript(),
    ca.certificate.fingerprint256,
    () => `${config.listen.host === "0.0.0.0" ? "127.0.0.1" : config.listen.host}:${port}`,
    config.mirror && ((authority) => mirrorUrl(config.mirror!, mirrorPort!, authority)),
  );
  const figures = [statsRoutes(statsSources, metrics)];
  const cacheAdmin = [cacheAdminRoutes(new CacheAdmin(store, paths), adminAccess, logger)];
  // With --admin-listen the figures and the cache admin API leave the proxy port for a port of their own.
  const adminServer = config.adminListen ? await startAdminServer(config.adminListen, new OwnEndpoints(ca.certPem, readiness, figures, cacheAdmin), logger) : undefined;
  const adminAddress = adminServer ? `${config.adminListen!.host}:${(adminServer.address() as AddressInfo).port}` : undefined;
  const endpoints = adminAddress
    ? new OwnEndpoints(ca.certPem, readiness, [setupScript], [movedToAdminRoute(() => adminAddress)])
    : new OwnEndpoints(ca.certPem, readiness, [...figures, setupScript], cacheAdmin);
  const policy: ConnectPolicy = {
    allowPorts: config.allowPorts,
    noIntercept: config.noIntercept,
    allowHosts: config.allowHosts,
    denyHosts: config.denyHosts,
    caPermittedDomains: ca.permittedDomains,
    unpermittedHosts: config.unpermittedHosts,
    denyPrivateAddresses: config.denyPrivateAddresses,
  };
  // The same requests as the proxy's, the same run, the same policy: only how a request names its upstream differs.
  const mirror = config.mirror
    ? new MirrorServer(config.mirror, {
        ca,
        minter,
        lifecycle,
        maxConnections: config.maxConnections,
        logger,
        onRequest: createMirrorRequestHandler({ run, policy, defaultUpstream: config.mirror.defaultUpstream, tokens: new AnonymousTokens(upstream), holdsCredentials: (host) => credentials?.covers(host) ?? false }),
      })
    : undefined;
  const server = createFrontServer({
    policy,
    lifecycle,
    proxyAuth: config.proxyAuthFile ? new ProxyAuth(config.proxyAuthFile) : undefined,
    maxConnections: config.maxConnections,
    interceptor,
    endpoints,
    dialer,
    connectTimeout: config.connectTimeout,
    logger,
    onNotIntercepted: (host, action) => collector.observeConnect(host, action),
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.listen.port, config.listen.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  port = (server.address() as AddressInfo).port;
  mirrorPort = await mirror?.listen();
  const mirrorListen = config.mirror && { mirror: `${config.mirror.listen.host}:${mirrorPort}`, mirrorTls: !config.mirror.plainHttp };
  logger.info({ listen: `${config.listen.host}:${port}`, adminListen: adminAddress, ...mirrorListen, dataDir: paths.root, maxCacheSize: config.maxCacheSize }, "regcache listening");

  return {
    port,
    mirrorPort,
    ca,
    store,
    health,
    async shutdown(drainDelayMs: number, graceMs: number) {
      lifecycle.draining = true;
      await new Promise((r) => setTimeout(r, drainDelayMs));
      // http.Server#close also destroys connections it considers idle, and a CONNECT tunnel
      // streaming a blob looks idle to it; net.Server#close only stops accepting.
      NetServer.prototype.close.call(server);
      mirror?.stopAccepting();
      const deadline = performance.now() + graceMs;
      const idle = (await lifecycle.waitIdle(graceMs)) && (await lifecycle.waitTunnelsQuiet(TUNNEL_QUIET_MS, deadline));
      if (idle) logger.info("in-flight requests finished");
      else {
        const cut = lifecycle.inFlight();
        logger.warn(
          { graceMs, requests: cut.length, cut: cut.slice(0, 20).map((l) => ({ client: l.client, host: l.host, repository: l.repository, digest: l.digest ?? l.tag, path: l.digest || l.tag ? undefined : l.path })) },
          "shutdown grace period over (--shutdown-grace): cutting the requests still in flight; their clients resume from another replica",
        );
      }
      health.stop();
      store.stopScrub();
      disk.stop();
      lifecycle.cutAll();
      server.closeAllConnections();
      adminServer?.close();
      adminServer?.closeAllConnections();
      mirror?.closeAllConnections();
      interceptor.close();
      // The cut requests' own log lines (cutAtShutdown) are written as their responses close: wait for them.
      await lifecycle.waitIdle(CUT_SETTLE_MS);
      await hostLabels.save();
      await peers?.close();
      await fleet?.close();
      await transport.destroy().catch(() => undefined);
      await index.close();
      await lock.release().catch(() => undefined);
    },
  };
}
