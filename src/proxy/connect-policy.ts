import { isIP } from "node:net";
import { hostMatches } from "../config/parse.js";
import { checkDialAddress } from "../upstream/address-policy.js";
import { isPermittedByConstraints } from "../tls/name-constraints.js";

export type ConnectDecision =
  | { action: "intercept"; host: string; port: number }
  | { action: "tunnel"; host: string; port: number }
  | { action: "deny"; status: 400 | 403; reason: string };

export interface ConnectPolicy {
  allowPorts: readonly number[];
  noIntercept: readonly string[];
  allowHosts: readonly string[];
  denyHosts: readonly string[];
  /** DNS subtrees the CA is constrained to; hosts outside are never intercepted. */
  caPermittedDomains: readonly string[];
  unpermittedHosts: "tunnel" | "deny";
  denyPrivateAddresses: boolean;
}

const HOST = /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i;
const IPV4 = /^\d{1,3}(?:\.\d{1,3}){3}$/;

/** Parses a CONNECT target (authority-form, RFC 9110 section 9.3.6). */
export interface ConnectTarget {
  host: string;
  port: number;
}

export function parseConnectTarget(target: string): ConnectTarget | undefined {
  const match = /^(?:\[([0-9a-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/i.exec(target);
  if (!match) return undefined;
  const host = (match[1] ?? match[2])!.toLowerCase();
  const port = Number(match[3]);
  if (port < 1 || port > 65535 || host.length > 253) return undefined;
  if (!match[1] && !HOST.test(host) && !IPV4.test(host)) return undefined;
  return { host, port };
}

/** Decides what to do with a CONNECT. Pure, so every rule is unit-tested. */
export function decideConnect(target: string, policy: ConnectPolicy): ConnectDecision {
  const parsed = parseConnectTarget(target);
  if (!parsed) return { action: "deny", status: 400, reason: `malformed CONNECT target "${target.slice(0, 100)}"` };
  const { host, port } = parsed;
  if (!policy.allowPorts.includes(port)) return { action: "deny", status: 403, reason: `port ${port} is not allowed (--allow-port)` };
  if (policy.denyHosts.length > 0 && hostMatches(host, policy.denyHosts)) return { action: "deny", status: 403, reason: `host ${host} is denied (--deny-host)` };
  if (policy.allowHosts.length > 0 && !hostMatches(host, policy.allowHosts)) return { action: "deny", status: 403, reason: `host ${host} is not in --allow-host` };
  if (isIP(host)) {
    const verdict = checkDialAddress(host, policy.denyPrivateAddresses);
    if (!verdict.allowed) return { action: "deny", status: 403, reason: verdict.reason };
  }
  if (hostMatches(host, policy.noIntercept)) return { action: "tunnel", host, port };
  if (!isPermittedByConstraints(host, policy.caPermittedDomains)) {
    return policy.unpermittedHosts === "deny"
      ? { action: "deny", status: 403, reason: `host ${host} is outside the CA's name constraints` }
      : { action: "tunnel", host, port };
  }
  return { action: "intercept", host, port };
}
