import { createHash, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import { RegcacheError, systemReason } from "../errors.js";

export interface AdminRefusal {
  status: 401 | 403;
  message: string;
  headers: Record<string, string>;
}

/** The token in an --admin-token file: its content without surrounding whitespace, one printable ASCII word. */
export function readAdminToken(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new RegcacheError("CONFIG", `cannot read --admin-token ${file}: ${systemReason(err)}`, { cause: err });
  }
  const token = text.trim();
  if (!/^[\x21-\x7e]+$/.test(token)) throw new RegcacheError("CONFIG", `--admin-token ${file} must hold one token of printable ASCII characters, without spaces`);
  return token;
}

/**
 * Who may use the cache admin API. With a token, every request must carry it as a bearer token,
 * loopback included: a local process is not necessarily the operator, and the rule is one a test
 * can see. Without one, only loopback peers may: the API stays off the network by default.
 */
export class AdminAccess {
  private readonly tokenHash: Buffer | undefined;

  constructor(token: string | undefined) {
    this.tokenHash = token === undefined ? undefined : sha256(token);
  }

  /** Why `req` may not use the API; undefined when it may. */
  refusal(req: IncomingMessage): AdminRefusal | undefined {
    // Browsers send Origin with every cross-site POST and DELETE, and a page may not choose to
    // omit it: no web page can have a browser on the proxy's host purge the cache. curl and the
    // CLI send none; the stats page only links to the list, and a link is followed without one.
    if (req.headers.origin !== undefined) return refuse(403, "requests from web pages are refused; use the CLI (regcache cache) or curl");
    if (this.tokenHash) {
      const presented = /^Bearer +(\S+) *$/i.exec(req.headers.authorization ?? "")?.[1];
      // Hashing first gives equal lengths, which timingSafeEqual needs, and leaks not even the token's length.
      if (presented !== undefined && timingSafeEqual(sha256(presented), this.tokenHash)) return undefined;
      return refuse(401, "the cache admin API needs Authorization: Bearer <the token in the --admin-token file>", { "www-authenticate": 'Bearer realm="regcache"' });
    }
    if (isLoopback(req.socket.remoteAddress)) return undefined;
    return refuse(403, "the cache admin API answers loopback clients only; set --admin-token on the proxy to use it from elsewhere");
  }
}

function refuse(status: 401 | 403, message: string, headers: Record<string, string> = {}): AdminRefusal {
  return { status, message, headers };
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

/** 127.0.0.0/8 and ::1, also as IPv4-mapped IPv6 addresses (a dual-stack listener reports those). */
export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  const v4 = address.startsWith("::ffff:") ? address.slice("::ffff:".length) : address;
  return address === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}
