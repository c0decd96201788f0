import { generateKeyPairSync, randomBytes, type KeyObject } from "node:crypto";
import forge from "node-forge";
import type { CertificateAuthority } from "./ca.js";
import { buildSignedCertificate, subjectNameDerOf } from "./certificate-builder.js";

/** Days, not years: the issuer lives in memory only, and a new process makes a new one. */
const ISSUER_VALIDITY_MS = 7 * 24 * 3_600_000;
/** Replaced when four of its seven days are gone, so no leaf it signed is ever within three days of expiry. */
const ISSUER_RENEW_AFTER_MS = 4 * 24 * 3_600_000;
/** Clients' clocks drift; back-date so a slightly slow node still accepts a fresh certificate. */
export const CLOCK_SKEW_MS = 60 * 60 * 1000;

/**
 * A per-process ECDSA P-256 intermediate CA that signs registry leaves. The RSA-3072 root
 * signs it once at start-up (~2.5 ms) and then every new host costs an ECDSA signature
 * (~0.05 ms); servers handshake with an ECDSA leaf key, cheaper than RSA-2048 for each
 * connection. Clients still trust only the root: leaves are sent with this certificate as
 * their chain. pathLen 0 and serverAuth keep it to signing server leaves; the root's name
 * constraints bind it like any certificate below the root. It is never written to disk.
 */
export interface LeafIssuer {
  key: KeyObject;
  certPem: string;
  /** Its subject Name's DER, the issuer of every leaf it signs. */
  subjectName: Buffer;
  notAfter: number;
  /** When a new issuer takes over; leaves signed by this one are re-minted from then. */
  renewAt: number;
}

export function mintLeafIssuer(ca: CertificateAuthority, now: number): LeafIssuer {
  const key = generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey;
  const notAfter = Math.min(now + ISSUER_VALIDITY_MS, new Date(ca.certificate.validTo).getTime());
  const certPem = buildSignedCertificate(
    {
      // Random, so that the issuers of two replicas or two runs are never mistaken for each other.
      commonName: `${ca.subjectCommonName} leaf issuer ${randomBytes(4).toString("hex")}`,
      publicKey: key,
      notBefore: new Date(now - CLOCK_SKEW_MS),
      notAfter: new Date(notAfter),
      issuerName: ca.subjectName,
      extensions: [
        { name: "basicConstraints", cA: true, pathLenConstraint: 0, critical: true },
        { name: "keyUsage", keyCertSign: true, digitalSignature: true, critical: true },
        { name: "extKeyUsage", serverAuth: true },
        ...authorityKeyIdentifier(ca.certPem),
      ],
    },
    ca.key,
  );
  return { key, certPem, subjectName: subjectNameDerOf(certPem), notAfter, renewAt: Math.min(now + ISSUER_RENEW_AFTER_MS, notAfter) };
}

/**
 * Names the root that signed the issuer by its key, not only by its subject. During a CA rotation a
 * node trusts two roots, and two CAs made the same day share their subject ("regcache root CA
 * <date>"): OpenSSL picks a root by subject, and without this it can pick the other one, whose
 * signature check then fails the handshake ("rsa routines::invalid padding"). RFC 5280 4.2.1.1
 * asks for it in every certificate but a self-signed root.
 */
function authorityKeyIdentifier(rootPem: string): object[] {
  const skid = forge.pki.certificateFromPem(rootPem).getExtension("subjectKeyIdentifier") as { subjectKeyIdentifier?: string } | null;
  return skid?.subjectKeyIdentifier ? [{ name: "authorityKeyIdentifier", keyIdentifier: forge.util.hexToBytes(skid.subjectKeyIdentifier) }] : [];
}
