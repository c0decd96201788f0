import { isIP } from "node:net";
import { RegcacheError } from "../errors.js";

/** Raised for a malformed option value; the message names the option and the value. */
export class OptionError extends RegcacheError {
  constructor(message: string) {
    super("USAGE", message);
  }
}

export interface HostPort {
  host: string;
  port: number;
}

export function parsePort(value: string, what = "port"): number {
  if (!/^\d{1,5}$/.test(value)) throw new OptionError(`${what} must be a number from 1 to 65535, got "${value}"`);
  const port = Number(value);
  if (port < 1 || port > 65535) throw new OptionError(`${what} must be a number from 1 to 65535, got "${value}"`);
  return port;
}

/** Parses HOST:PORT, [IPv6]:PORT; port 0 is allowed for listening on a free port. */
export function parseHostPort(value: string, what: string, allowZero = false): HostPort {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(value.trim());
  if (!match) throw new OptionError(`${what} must be HOST:PORT, got "${value}"`);
  const host = (match[1] ?? match[2])!;
  if (match[1] && isIP(match[1]) !== 6) throw new OptionError(`${what}: "${match[1]}" is not an IPv6 address`);
  if (allowZero && match[3] === "0") return { host, port: 0 };
  return { host, port: parsePort(match[3]!, `${what} port`) };
}

/** An http:// or https:// URL with a host; "127.0.0.1:3128" without a scheme is refused, not guessed at. */
export function parseHttpUrl(value: string, what: string): string {
  if (!/^https?:\/\/[^/]/i.test(value) || !URL.canParse(value)) throw new OptionError(`${what} must be a URL such as http://127.0.0.1:3128, got "${value}"`);
  return value;
}

export interface ResolveRule {
  from: HostPort;
  to: HostPort;
}

/** HOST:PORT=ADDR:PORT, like curl's --connect-to. */
export function parseResolve(value: string): ResolveRule {
  const parts = value.split("=");
  if (parts.length !== 2) throw new OptionError(`--resolve must be HOST:PORT=ADDR:PORT, got "${value}"`);
  const from = parseHostPort(parts[0]!, "--resolve source");
  return { from: { host: from.host.toLowerCase(), port: from.port }, to: parseHostPort(parts[1]!, "--resolve target") };
}

/**
 * Each unit has one meaning: SI units are powers of 1000, IEC units powers of 1024, and
 * Kubernetes' quantity suffixes (Ki, Mi, Gi, Ti, as in an emptyDir's sizeLimit) mean what IEC's do.
 */
const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
  ki: 2 ** 10,
  mi: 2 ** 20,
  gi: 2 ** 30,
  ti: 2 ** 40,
};

const SIZE_UNIT_NAMES = "B, KB, MB, GB, TB, KiB, MiB, GiB, TiB, Ki, Mi, Gi, Ti";

/**
 * A bare K, M, G or T means 1000s to Kubernetes and 1024s to df, du and docker: which one an
 * operator meant cannot be known, so it is refused with both spellings.
 */
const AMBIGUOUS_UNITS = new Set(["k", "m", "g", "t"]);

/**
 * "50GiB", "20Gi", "512MB", "4096B". A bare number is refused: an operator who writes
 * `--max-cache-size 20` means gigabytes far more often than the 20 bytes it would be.
 */
export function parseSize(value: string, what = "size"): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
  if (match?.[2] === "") throw new OptionError(`${what} needs a unit, e.g. ${match[1]}GiB (${SIZE_UNIT_NAMES})`);
  if (match && AMBIGUOUS_UNITS.has(match[2]!.toLowerCase())) {
    const [n, unit] = [match[1]!, match[2]!.toUpperCase()];
    throw new OptionError(`${what} "${value.trim()}" is ambiguous: write ${n}${unit}iB for ${n} × 1024^${"KMGT".indexOf(unit) + 1} bytes (Kubernetes' ${n}${unit}i) or ${n}${unit}B for ${n} × 1000^${"KMGT".indexOf(unit) + 1}`);
  }
  const unit = match ? SIZE_UNITS[match[2]!.toLowerCase()] : undefined;
  if (!match || unit === undefined) {
    throw new OptionError(`${what} must be a number with a unit (${SIZE_UNIT_NAMES}), got "${value}"`);
  }
  return Math.floor(Number(match[1]) * unit);
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "0", "500ms", "5s", "10m", "1h", "7d"; a bare number means seconds. Returns milliseconds. */
export function parseDuration(value: string, what = "duration"): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(value);
  if (!match) throw new OptionError(`${what} must be a duration such as 500ms, 5s, 10m, 1h or 7d, got "${value}"`);
  return Math.round(Number(match[1]) * DURATION_UNITS[match[2] ?? "s"]!);
}

/**
 * Host patterns: "registry.example.com" matches itself, "*.example.com" matches
 * any subdomain (not example.com itself), "*" matches everything.
 */
export function parseHostPattern(value: string, what = "host pattern"): string {
  const pattern = value.trim().toLowerCase();
  if (!/^(\*|(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*|[0-9a-f:.]+)$/.test(pattern)) {
    throw new OptionError(`${what} must be a host name, *.domain or *, got "${value}"`);
  }
  return pattern;
}

export function hostMatches(host: string, patterns: readonly string[]): boolean {
  const h = host.toLowerCase();
  return patterns.some((p) => p === "*" || p === h || (p.startsWith("*.") && h.endsWith(p.slice(1))));
}

export function splitList(value: string): string[] {
  return value
    .split(",")
    .map((v) => v.trim())
    .filter((v) => v.length > 0);
}
