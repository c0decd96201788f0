import type { AddressInfo } from "node:net";
import type { ClusterConfig } from "../config/config.js";
import type { Logger } from "../log/logger.js";
import type { CertificateAuthority } from "../tls/ca.js";
import { Cluster } from "./cluster.js";
import { Membership } from "./membership.js";
import { PeerClient } from "./peer-client.js";
import { mintPeerIdentity, type PeerIdentity } from "./peer-identity.js";
import { createPeerServer, type PeerServices } from "./peer-server.js";
import { RefusalLog } from "./refusal-log.js";

/** How often DNS is resolved and every peer's health checked: a dead replica is skipped within this. */
const MEMBERSHIP_REFRESH_MS = 2_000;

export interface RunningCluster {
  cluster: Cluster;
  /** Starts the peer server and membership once the replica's handlers exist. */
  listen(services: PeerServices): Promise<number>;
  close(): Promise<void>;
}

/** The cluster's parts, built before the registry handlers that use them. */
export function createCluster(config: ClusterConfig, ca: CertificateAuthority, logger: Logger): RunningCluster {
  const identity: PeerIdentity = mintPeerIdentity(ca);
  const client = new PeerClient(identity);
  const peerPort = Number(config.advertise.slice(config.advertise.lastIndexOf(":") + 1));
  const membership = new Membership(
    { staticPeers: config.peers, dnsName: config.peersDns, peerPort, self: config.advertise, refreshMs: MEMBERSHIP_REFRESH_MS },
    (address) => client.health(address),
    logger,
  );
  const refusals = new RefusalLog(logger);
  const cluster = new Cluster(membership, client, logger, refusals.counts);
  let server: ReturnType<typeof createPeerServer> | undefined;
  return {
    cluster,
    async listen(services) {
      server = createPeerServer(identity, services, logger, refusals);
      await new Promise<void>((resolve, reject) => {
        server!.once("error", reject);
        server!.listen(config.listen.port, config.listen.host, () => resolve());
      });
      const port = (server.address() as AddressInfo).port;
      await membership.start();
      logger.info({ peerListen: `${config.listen.host}:${port}`, advertise: config.advertise, peers: config.peers, peersDns: config.peersDns, live: membership.live() }, "peer channel listening");
      return port;
    },
    async close() {
      membership.stop();
      refusals.close();
      server?.closeAllConnections();
      server?.close();
      await client.destroy();
    },
  };
}
