import { BlockList, isIPv4 } from "node:net";

/**
 * Addresses regcache never dials, whatever a client asks: link-local (which
 * includes the cloud metadata endpoint 169.254.169.254) and IPv6 link-local.
 * A proxy every node trusts must not become a way to read instance credentials.
 */
const ALWAYS_BLOCKED = new BlockList();
ALWAYS_BLOCKED.addSubnet("169.254.0.0", 16, "ipv4");
ALWAYS_BLOCKED.addSubnet("fe80::", 10, "ipv6");
ALWAYS_BLOCKED.addAddress("0.0.0.0", "ipv4");
ALWAYS_BLOCKED.addAddress("::", "ipv6");

const PRIVATE = new BlockList();
PRIVATE.addSubnet("10.0.0.0", 8, "ipv4");
PRIVATE.addSubnet("172.16.0.0", 12, "ipv4");
PRIVATE.addSubnet("192.168.0.0", 16, "ipv4");
PRIVATE.addSubnet("100.64.0.0", 10, "ipv4");
PRIVATE.addSubnet("127.0.0.0", 8, "ipv4");
PRIVATE.addSubnet("fc00::", 7, "ipv6");
PRIVATE.addAddress("::1", "ipv6");

export type AddressVerdict = { allowed: true } | { allowed: false; reason: string };

export function checkDialAddress(address: string, denyPrivate: boolean): AddressVerdict {
  const family: "ipv4" | "ipv6" = isIPv4(address) ? "ipv4" : "ipv6";
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  const [addr, fam]: [string, "ipv4" | "ipv6"] = mapped ? [mapped[1]!, "ipv4"] : [address, family];
  if (ALWAYS_BLOCKED.check(addr, fam)) {
    return { allowed: false, reason: `address ${address} is link-local or unspecified (cloud metadata range); regcache never connects there` };
  }
  if (denyPrivate && PRIVATE.check(addr, fam)) {
    return { allowed: false, reason: `address ${address} is private and --deny-private-addresses is set` };
  }
  return { allowed: true };
}
