import { createHmac, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import bcrypt from "bcryptjs";
import { RegcacheError } from "../errors.js";
import { LruMap } from "../util/lru-map.js";

export class ProxyAuthFileError extends RegcacheError {
  constructor(message: string) {
    super("CONFIG", message);
  }
}

/** bcrypt costs ~100 ms a check by design; a verified header is remembered (as an HMAC) this long. */
const VERIFIED_TTL_MS = 5 * 60 * 1000;
const MAX_VERIFIED = 1000;

/**
 * Proxy authentication (RFC 9110 section 11.7): Proxy-Authorization: Basic, checked
 * against an htpasswd file of bcrypt entries. Go clients send it from
 * HTTPS_PROXY=http://user:pass@host:3128.
 */
export class ProxyAuth {
  private readonly users = new Map<string, string>();
  /** Keyed by header: a user can spell one credential many ways, so it is bounded. */
  private readonly verified = new LruMap<string, number>(MAX_VERIFIED);
  private readonly secret = randomBytes(32);

  constructor(file: string) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      throw new ProxyAuthFileError(`cannot read --proxy-auth ${file}: ${(err as Error).message}`);
    }
    for (const line of text.split("\n")) {
      const trimmed = line.trim();
      if (!trimmed || trimmed.startsWith("#")) continue;
      const colon = trimmed.indexOf(":");
      const hash = trimmed.slice(colon + 1);
      if (colon <= 0 || !/^\$2[aby]\$\d\d\$/.test(hash)) throw new ProxyAuthFileError(`--proxy-auth ${file}: only bcrypt entries are accepted (htpasswd -B)`);
      this.users.set(trimmed.slice(0, colon), hash);
    }
  }

  /** The user name when the header carries valid credentials, else undefined. */
  async check(header: string | undefined): Promise<string | undefined> {
    if (!header || header.length > 1024) return undefined;
    const match = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(header.trim());
    if (!match) return undefined;
    const decoded = Buffer.from(match[1]!, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon <= 0) return undefined;
    const user = decoded.slice(0, colon);
    const key = createHmac("sha256", this.secret).update(header).digest("hex");
    const until = this.verified.get(key);
    if (until && until > performance.now()) return user;
    const hash = this.users.get(user);
    if (!hash || !(await bcrypt.compare(decoded.slice(colon + 1), hash))) return undefined;
    this.verified.set(key, performance.now() + VERIFIED_TTL_MS);
    return user;
  }
}
