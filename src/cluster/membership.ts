import { lookup } from "node:dns/promises";
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

  constructor(
    private readonly options: MembershipOptions,
    private readonly checkHealth: (address: string) => Promise<void>,
    private readonly logger: Logger,
    private readonly resolve: (name: string) => Promise<string[]> = resolveAll,
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
    const addresses = new Set(this.options.staticPeers);
    if (this.options.dnsName) {
      const found = await this.resolve(this.options.dnsName).catch((err: unknown) => {
        this.logger.warn({ name: this.options.dnsName, err: (err as Error).message }, "cannot resolve --peers-dns; keeping the peers known so far");
        return [...this.peers.keys()].filter((a) => !this.options.staticPeers.includes(a)).map((a) => a.slice(0, a.lastIndexOf(":")).replace(/^\[|\]$/g, ""));
      });
      for (const address of found) addresses.add(peerAddress(address, this.options.peerPort));
    }
    addresses.delete(this.options.self);
    for (const address of this.peers.keys()) if (!addresses.has(address)) this.peers.delete(address);
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
async function resolveAll(name: string): Promise<string[]> {
  return (await lookup(name, { all: true })).map((a) => a.address);
}
