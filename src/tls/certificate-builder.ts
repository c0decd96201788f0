import { createPublicKey, randomBytes, sign, type KeyObject } from "node:crypto";
import forge from "node-forge";

const { pki, asn1 } = forge;

export interface CertificateRequest {
  commonName: string;
  /** PEM of the public key the certificate certifies. */
  publicKeyPem: string;
  notBefore: Date;
  notAfter: Date;
  extensions: object[];
  /** Issuer subject attributes; omitted for a self-signed certificate. */
  issuer?: forge.pki.CertificateField[];
}

/**
 * A positive serial of 127 random bits. Go 1.23+ rejects negative serials, and
 * DER integers are signed, so the top bit of the first byte must be clear.
 */
export function randomSerialHex(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return bytes.toString("hex");
}

/**
 * Builds an X.509 certificate with node-forge and signs it with native crypto:
 * forge's pure-JS RSA signature costs ~50x more and would block the event loop
 * on every new host.
 */
export function buildSignedCertificate(request: CertificateRequest, signingKey: KeyObject): string {
  const unsigned = buildUnsigned(request);
  return unsigned.withSignature(sign("sha256", unsigned.tbsDer, signingKey));
}

/**
 * The same, with the signature computed on libuv's thread pool: an RSA-3072 signature takes
 * ~2.5 ms, which the event loop spends serving other connections instead.
 */
export async function buildSignedCertificateAsync(request: CertificateRequest, signingKey: KeyObject): Promise<string> {
  const unsigned = buildUnsigned(request);
  const signature = await new Promise<Buffer>((resolve, reject) =>
    sign("sha256", unsigned.tbsDer, signingKey, (err, sig) => (err ? reject(err) : resolve(sig))),
  );
  return unsigned.withSignature(signature);
}

function buildUnsigned(request: CertificateRequest): { tbsDer: Buffer; withSignature(signature: Buffer): string } {
  const cert = pki.createCertificate();
  cert.publicKey = pki.publicKeyFromPem(request.publicKeyPem);
  cert.serialNumber = randomSerialHex();
  cert.validity.notBefore = request.notBefore;
  cert.validity.notAfter = request.notAfter;
  const subject = [{ name: "commonName", value: request.commonName }];
  cert.setSubject(subject);
  cert.setIssuer(request.issuer ?? subject);
  cert.setExtensions(request.extensions);
  cert.signatureOid = pki.oids.sha256WithRSAEncryption!;
  cert.siginfo.algorithmOid = pki.oids.sha256WithRSAEncryption!;
  // getTBSCertificate exists in forge but is missing from @types/node-forge.
  const tbs = (pki as unknown as { getTBSCertificate(c: forge.pki.Certificate): forge.asn1.Asn1 }).getTBSCertificate(cert);
  cert.tbsCertificate = tbs;
  return {
    tbsDer: Buffer.from(asn1.toDer(tbs).getBytes(), "binary"),
    withSignature(signature) {
      cert.signature = signature.toString("binary");
      return pki.certificateToPem(cert);
    },
  };
}

export function publicKeyPemOf(privateKey: KeyObject): string {
  return createPublicKey(privateKey).export({ type: "spki", format: "pem" }).toString();
}
