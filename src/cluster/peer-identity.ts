import { generateKeyPairSync, X509Certificate } from "node:crypto";
import { DEFAULT_CIPHERS, type PeerCertificate } from "node:tls";
import { buildSignedCertificate } from "../tls/certificate-builder.js";
import type { CertificateAuthority } from "../tls/ca.js";

/**
 * What marks a certificate as a regcache replica's: a URI name no registry leaf carries. Leaves
 * for registry hosts come from the same CA, so the CA alone must not be enough to talk to a peer.
 */
export const PEER_URI = "urn:regcache:peer";
const AES_128_GCM = "TLS_AES_128_GCM_SHA256";
/**
 * The peer server's cipher suites, in the order it picks them (a Node TLS server's own order
 * wins): Node's defaults with AES-128-GCM first (they lead with AES-256-GCM). Every byte of a
 * cluster fill crosses the peer channel once, encrypted by the owner and decrypted by the asker;
 * on AES hardware AES-128-GCM costs about half as much per byte (`openssl speed -evp aes-128-gcm`
 * and `aes-256-gcm`: 4.7 and 2.4 to 2.9 GB/s on one core of an AMD EPYC). It is TLS 1.3's
 * mandatory suite (RFC 8446, section 9.1) and the one Go's TLS prefers on such hardware.
 */
export const PEER_CIPHERS = withAes128First(DEFAULT_CIPHERS);

/** A cipher list with AES-128-GCM moved to the front, where the list has it (`--tls-cipher-list` may not). */
export function withAes128First(ciphers: string): string {
  const suites = ciphers.split(":");
  if (!suites.includes(AES_128_GCM)) return ciphers;
  return [AES_128_GCM, ...suites.filter((suite) => suite !== AES_128_GCM)].join(":");
}

/** Minted at every start and never written to disk: a short life costs nothing. */
const PEER_CERT_VALIDITY_MS = 30 * 24 * 3_600_000;

export interface PeerIdentity {
  certPem: string;
  keyPem: string;
  caPem: string;
}

/** A client-and-server certificate for the peer channel, signed by the shared root CA. */
export function mintPeerIdentity(ca: CertificateAuthority, now = Date.now()): PeerIdentity {
  const key = generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey;
  const certPem = buildSignedCertificate(
    {
      // Not a host name: name constraints on the CA must not apply to it.
      commonName: "regcache peer",
      publicKey: key,
      notBefore: new Date(now - 5 * 60_000),
      notAfter: new Date(Math.min(now + PEER_CERT_VALIDITY_MS, new Date(ca.certificate.validTo).getTime())),
      issuerName: ca.subjectName,
      extensions: [
        { name: "basicConstraints", cA: false },
        { name: "keyUsage", digitalSignature: true, critical: true },
        { name: "extKeyUsage", serverAuth: true, clientAuth: true },
        { name: "subjectAltName", altNames: [{ type: 6, value: PEER_URI }] },
      ],
    },
    ca.key,
  );
  return { certPem, keyPem: key.export({ type: "pkcs8", format: "pem" }).toString(), caPem: ca.certPem };
}

/** Whether a certificate the TLS layer already verified against the root CA names a peer. */
export function isPeerCertificate(cert: PeerCertificate | X509Certificate | undefined): boolean {
  const altNames = cert instanceof X509Certificate ? cert.subjectAltName : cert?.subjectaltname;
  return (altNames ?? "").split(/,\s*/).includes(`URI:${PEER_URI}`);
}
