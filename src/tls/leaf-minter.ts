import { generateKeyPairSync } from "node:crypto";
import { isIP } from "node:net";
import type { CertificateAuthority } from "./ca.js";
import { buildSignedCertificateAsync, publicKeyPemOf } from "./certificate-builder.js";
import { LruMap } from "../util/lru-map.js";

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
 * per-host cost is one native signature, made off the event loop.
 * The `capacity` most recently used leaves are kept; concurrent requests for
 * a host share one mint.
 */
export class LeafMinter {
  private readonly leaves: LruMap<string, Leaf>;
  private readonly minting = new Map<string, Promise<Leaf>>();
  private readonly leafKeyPem: string;
  private readonly leafPublicKeyPem: string;
  private readonly issuer: { name: string; value: string }[];
  private readonly caNotAfter: number;
  minted = 0;

  constructor(
    private readonly ca: CertificateAuthority,
    readonly capacity = 1000,
    private readonly now: () => number = Date.now,
  ) {
    this.leaves = new LruMap(capacity);
    const leafKey = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
    this.leafKeyPem = leafKey.export({ type: "pkcs8", format: "pem" }).toString();
    this.leafPublicKeyPem = publicKeyPemOf(leafKey);
    this.issuer = [{ name: "commonName", value: ca.subjectCommonName }];
    this.caNotAfter = new Date(ca.certificate.validTo).getTime();
  }

  /** The host's leaf if one is held and not yet due for renewal (marks it recently used). */
  freshLeaf(host: string): Leaf | undefined {
    const key = host.toLowerCase();
    const cached = this.leaves.get(key);
    if (!cached || this.now() - cached.mintedAt >= LEAF_RENEW_AFTER_MS) return undefined;
    return cached;
  }

  async leafFor(host: string): Promise<Leaf> {
    const key = host.toLowerCase();
    const fresh = this.freshLeaf(key);
    if (fresh) return fresh;
    let pending = this.minting.get(key);
    if (!pending) {
      pending = this.mint(key).finally(() => this.minting.delete(key));
      this.minting.set(key, pending);
    }
    return pending;
  }

  private async mint(host: string): Promise<Leaf> {
    const now = this.now();
    const notBefore = new Date(now - CLOCK_SKEW_MS);
    const notAfterMs = Math.min(now + LEAF_VALIDITY_MS, this.caNotAfter);
    const altName = isIP(host) ? { type: 7, ip: host } : { type: 2, value: host };
    const certPem = await buildSignedCertificateAsync(
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
    const leaf = { host, certPem, keyPem: this.leafKeyPem, mintedAt: now, notAfter: notAfterMs };
    this.leaves.set(host, leaf);
    return leaf;
  }
}
