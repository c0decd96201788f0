import { createPublicKey, generateKeyPairSync, sign } from "node:crypto";
import type { CertificateAuthority } from "./ca.js";
import { randomSerial } from "./certificate-builder.js";
import { certificatePem, leafTbsDer } from "./leaf-certificate.js";
import { CLOCK_SKEW_MS, mintLeafIssuer, type LeafIssuer } from "./leaf-issuer.js";
import { LruMap } from "../util/lru-map.js";

export interface Leaf {
  host: string;
  /** The leaf alone. */
  certPem: string;
  /** The leaf and its issuer, what a TLS server sends. */
  chainPem: string;
  keyPem: string;
  /** Whose validity a leaf shares: it expires with its issuer. */
  issuer: LeafIssuer;
}

/**
 * Mints one leaf per host, all sharing one per-process ECDSA P-256 key and signed by the
 * process's leaf issuer (leaf-issuer.ts), so the only per-host cost is one ECDSA signature.
 * A leaf lives as long as its issuer and is re-minted when a new
 * issuer takes over. The `capacity` most recently used leaves are kept.
 */
export class LeafMinter {
  private readonly leaves: LruMap<string, Leaf>;
  private readonly leafKeyPem: string;
  private readonly leafPublicKeyInfo: Buffer;
  private issuer: LeafIssuer;
  minted = 0;

  constructor(
    private readonly ca: CertificateAuthority,
    readonly capacity = 1000,
    private readonly now: () => number = Date.now,
  ) {
    this.leaves = new LruMap(capacity);
    const leafKey = generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey;
    this.leafKeyPem = leafKey.export({ type: "pkcs8", format: "pem" }).toString();
    this.leafPublicKeyInfo = createPublicKey(leafKey).export({ type: "spki", format: "der" });
    this.issuer = mintLeafIssuer(ca, now());
  }

  /**
   * The host's leaf: the one held (marked recently used) while its issuer is the current one,
   * else minted now: an ECDSA signature (~0.03 ms) is cheaper than a hop to the thread pool.
   */
  leafFor(host: string): Leaf {
    return this.leafForNames([host]);
  }

  /** One leaf valid for all of `names` (DNS names or IP literals; the first is its subject), held and renewed like a host's. */
  leafForNames(names: readonly string[]): Leaf {
    const lower = names.map((n) => n.toLowerCase());
    const key = lower.join(" ");
    const cached = this.leaves.get(key);
    return cached?.issuer === this.currentIssuer() ? cached : this.mint(key, lower);
  }

  /** The issuer for new leaves, replaced (one RSA signature by the root) once it is due. */
  private currentIssuer(): LeafIssuer {
    const now = this.now();
    if (now >= this.issuer.renewAt) this.issuer = mintLeafIssuer(this.ca, now);
    return this.issuer;
  }

  private mint(key: string, names: string[]): Leaf {
    const issuer = this.currentIssuer();
    const host = names[0]!;
    const tbs = leafTbsDer({
      host,
      otherNames: names.slice(1),
      serial: randomSerial(),
      notBefore: new Date(this.now() - CLOCK_SKEW_MS),
      notAfter: new Date(issuer.notAfter),
      issuerName: issuer.subjectName,
      subjectPublicKeyInfo: this.leafPublicKeyInfo,
    });
    const certPem = certificatePem(tbs, sign("sha256", tbs, issuer.key));
    this.minted += 1;
    const leaf = { host, certPem, chainPem: certPem + issuer.certPem, keyPem: this.leafKeyPem, issuer };
    this.leaves.set(key, leaf);
    return leaf;
  }
}
