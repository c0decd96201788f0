import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import type { Logger } from "../log/logger.js";

export interface MembershipOptions {
  /** --peer: a static list, "host:port" each. */
  staticPeers: string[];
  /** --peers-dns: a headless Service name, resolved to the ready replicas' addresses. */
  dnsName?: string;
  /** The peer port of addresses found in DNS. */
  peerPort: number;
  /** --advertise: how the others reach this replica; it is skipped in the lists. */
  self: string;
  /** How often the DNS name is resolved and every peer's health checked (ms). */
  refreshMs: number;
}

export interface PeerState {
  address: string;
  live: boolean;
  since: number;
  lastError?: string;
}

/** "host:port" with IPv6 addresses bracketed, as peers are named everywhere. */
export function peerAddress(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Who the other replicas are, and which of them answer. Kubernetes says who exists (a headless
 * Service lists ready pods only); a health check on the peer channel says who answers now, so a
 * replica that died a second ago is skipped without waiting for DNS.
 */
export class Membership {
  private readonly peers = new Map<string, PeerState>();
  private timer: NodeJS.Timeout | undefined;
  /** The peers --peers-dns last named ("host:port"), kept while the name cannot be resolved. */
  private named: string[] = [];
  /** Why the name last failed to resolve; undefined while it resolves. */
  private dnsError: string | undefined;

  constructor(
    private readonly options: MembershipOptions,
    private readonly checkHealth: (address: string) => Promise<void>,
    private readonly logger: Logger,
    private readonly resolve: (name: string, family: 0 | 4 | 6) => Promise<string[]> = resolveAll,
  ) {}

  get self(): string {
    return this.options.self;
  }

  /** Live peers, this replica excluded. */
  live(): string[] {
    return [...this.peers.values()].filter((p) => p.live).map((p) => p.address);
  }

  snapshot(): PeerState[] {
    return [...this.peers.values()].map((p) => ({ ...p }));
  }

  async start(): Promise<void> {
    await this.refresh();
    const tick = (): void => {
      this.timer = setTimeout(() => void this.refresh().finally(tick), this.options.refreshMs);
      this.timer.unref();
    };
    tick();
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  /** Marks a peer down at once when a request to it fails, rather than at the next check. */
  reportFailure(address: string, error: string): void {
    const peer = this.peers.get(address);
    if (peer?.live) this.transition(peer, false, error);
  }

  private async refresh(): Promise<void> {
    if (this.options.dnsName) this.named = await this.resolveNamed(this.options.dnsName);
    const addresses = new Set([...this.options.staticPeers, ...this.named]);
    addresses.delete(this.options.self);
    for (const address of this.peers.keys()) {
      if (addresses.has(address)) continue;
      this.peers.delete(address);
      this.logger.info({ peer: address }, "peer is no longer a member");
    }
    await Promise.all(
      [...addresses].map(async (address) => {
        let peer = this.peers.get(address);
        if (!peer) {
          peer = { address, live: false, since: Date.now() };
          this.peers.set(address, peer);
        }
        try {
          await this.checkHealth(address);
          if (!peer.live) this.transition(peer, true);
        } catch (err) {
          if (peer.live || peer.lastError === undefined) this.transition(peer, false, (err as Error).message);
        }
      }),
    );
  }

  /**
   * The name's answer as peer addresses; when it cannot be resolved (no such name, or the DNS
   * server does not answer), the last answer. Kubernetes DNS has blips, and a headless Service with
   * no ready pod at all has no name: forgetting every peer then would send each replica upstream on
   * its own, while the health checks already skip the peers that are really gone.
   */
  private async resolveNamed(name: string): Promise<string[]> {
    try {
      const found = (await this.resolve(name, this.family())).map((a) => peerAddress(a, this.options.peerPort));
      if (this.dnsError !== undefined) this.logger.info({ name, peers: found }, "--peers-dns resolves again");
      this.dnsError = undefined;
      return found;
    } catch (err) {
      const reason = (err as { code?: string }).code ?? (err as Error).message;
      // Once per failure, not at every refresh: a name that stays unresolvable would flood the log.
      if (this.dnsError !== reason) {
        this.logger.warn(
          { name, err: (err as Error).message, kept: this.named },
          this.named.length > 0 ? "cannot resolve --peers-dns; keeping the peers it last named" : "cannot resolve --peers-dns; serving as a single replica until it resolves",
        );
      }
      this.dnsError = reason;
      return this.named;
    }
  }

  /**
   * The address family of --advertise: a dual-stack Service names every pod twice (A and AAAA),
   * and only the family this replica advertises in lets it skip itself and count each peer once.
   */
  private family(): 0 | 4 | 6 {
    const self = this.options.self;
    return isIP(self.slice(0, self.lastIndexOf(":")).replace(/^\[|\]$/g, "")) as 0 | 4 | 6;
  }

  private transition(peer: PeerState, live: boolean, error?: string): void {
    peer.live = live;
    peer.since = Date.now();
    peer.lastError = error;
    this.logger.info({ peer: peer.address, live, err: error }, live ? "peer is live" : "peer is not answering");
  }
}

/**
 * Every address of a name, as the system resolver gives them (a headless Service's ready pods
 * through the cluster DNS in resolv.conf; /etc/hosts too, which static setups can use).
 */
async function resolveAll(name: string, family: 0 | 4 | 6): Promise<string[]> {
  return (await lookup(name, { all: true, family })).map((a) => a.address);
}
