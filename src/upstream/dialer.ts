import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { checkDialAddress } from "./address-policy.js";
import type { ResolveMap } from "./resolve-map.js";
import { UpstreamError } from "./upstream-error.js";

export interface DialTarget {
  address: string;
  port: number;
}

/**
 * Decides where a host:port is dialled: a --resolve rule, or DNS. The resolved
 * address, not the name, is checked against the address policy, so a name that
 * resolves to the metadata endpoint is refused however it is spelled (no DNS-rebinding bypass).
 */
export class Dialer {
  constructor(
    private readonly resolveMap: ResolveMap,
    private readonly denyPrivate: boolean,
  ) {}

  async target(host: string, port: number): Promise<DialTarget> {
    const mapped = this.resolveMap.lookup(host, port);
    if (mapped) return { address: mapped.host, port: mapped.port };
    const address = isIP(host) ? host : (await lookup(host)).address;
    const verdict = checkDialAddress(address, this.denyPrivate);
    if (!verdict.allowed) throw new UpstreamError("refused-address", host, verdict.reason);
    return { address, port };
  }
}
