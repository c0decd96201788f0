import { generateKeyPairSync, X509Certificate } from "node:crypto";
import type { PeerCertificate } from "node:tls";
import { buildSignedCertificate } from "../tls/certificate-builder.js";
import type { CertificateAuthority } from "../tls/ca.js";

/**
 * What marks a certificate as a regcache replica's: a URI name no registry leaf carries. Leaves
 * for registry hosts come from the same CA, so the CA alone must not be enough to talk to a peer.
 */
export const PEER_URI = "urn:regcache:peer";
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
