import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { isIP } from "node:net";
import type { CertificateAuthority } from "./ca.js";
import { buildSignedCertificate, publicKeyPemOf } from "./certificate-builder.js";

/** Leaves live 90 days: long enough to never matter, short enough that a leaked leaf ages out. */
const LEAF_VALIDITY_MS = 90 * 24 * 60 * 60 * 1000;
/** Re-mint once a leaf has used two thirds of its life, well before any client sees it expire. */
const LEAF_RENEW_AFTER_MS = 60 * 24 * 60 * 60 * 1000;
/** Clients' clocks drift; back-date so a slightly slow node still accepts a fresh leaf. */
const CLOCK_SKEW_MS = 60 * 60 * 1000;

export interface Leaf {
  host: string;
  certPem: string;
  keyPem: string;
  mintedAt: number;
  notAfter: number;
}

/**
 * Mints one leaf per host, all sharing one per-process RSA key, so the only
 * per-host cost is one native signature (well under a millisecond).
 * A bounded map in insertion order serves as the LRU.
 */
export class LeafMinter {
  private readonly leaves = new Map<string, Leaf>();
  private readonly leafKey: KeyObject;
  private readonly leafKeyPem: string;
  private readonly leafPublicKeyPem: string;
  private readonly issuer: { name: string; value: string }[];
  private readonly caNotAfter: number;
  minted = 0;

  constructor(
    private readonly ca: CertificateAuthority,
    private readonly capacity = 1000,
    private readonly now: () => number = Date.now,
  ) {
    this.leafKey = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
    this.leafKeyPem = this.leafKey.export({ type: "pkcs8", format: "pem" }).toString();
    this.leafPublicKeyPem = publicKeyPemOf(this.leafKey);
    this.issuer = [{ name: "commonName", value: ca.subjectCommonName }];
    this.caNotAfter = new Date(ca.certificate.validTo).getTime();
  }

  leafFor(host: string): Leaf {
    const key = host.toLowerCase();
    const cached = this.leaves.get(key);
    if (cached && this.now() - cached.mintedAt < LEAF_RENEW_AFTER_MS) {
      this.leaves.delete(key);
      this.leaves.set(key, cached);
      return cached;
    }
    const leaf = this.mint(key);
    this.leaves.delete(key);
    this.leaves.set(key, leaf);
    while (this.leaves.size > this.capacity) {
      const oldest = this.leaves.keys().next().value as string;
      this.leaves.delete(oldest);
    }
    return leaf;
  }

  private mint(host: string): Leaf {
    const now = this.now();
    const notBefore = new Date(now - CLOCK_SKEW_MS);
    const notAfterMs = Math.min(now + LEAF_VALIDITY_MS, this.caNotAfter);
    const altName = isIP(host) ? { type: 7, ip: host } : { type: 2, value: host };
    const certPem = buildSignedCertificate(
      {
        commonName: host,
        publicKeyPem: this.leafPublicKeyPem,
        notBefore,
        notAfter: new Date(notAfterMs),
        issuer: this.issuer,
        extensions: [
          { name: "basicConstraints", cA: false },
          { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
          { name: "extKeyUsage", serverAuth: true },
          { name: "subjectAltName", altNames: [altName] },
        ],
      },
      this.ca.key,
    );
    this.minted += 1;
    return { host, certPem, keyPem: this.leafKeyPem, mintedAt: now, notAfter: notAfterMs };
  }
}
