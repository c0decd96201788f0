import { createHash, createPublicKey, randomBytes, sign, type KeyObject } from "node:crypto";
import forge from "node-forge";

const { pki, asn1 } = forge;

export interface CertificateRequest {
  commonName: string;
  /** The key the certificate certifies: RSA or ECDSA P-256, public or private (its public half is used). */
  publicKey: KeyObject;
  notBefore: Date;
  notAfter: Date;
  extensions: object[];
  /**
   * The issuer's subject Name, DER as it is in the issuer's certificate (Go matches it byte for
   * byte); omitted for a self-signed certificate.
   */
  issuerName?: Buffer;
}

/**
 * A positive serial of 127 random bits. Go 1.23+ rejects negative serials, and
 * DER integers are signed, so the top bit of the first byte must be clear.
 */
export function randomSerial(): Buffer {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return bytes;
}

/**
 * forge encodes only RSA public keys, so its TBSCertificate is built around a placeholder key
 * and the real SubjectPublicKeyInfo (any algorithm, DER from node:crypto) takes its place.
 */
const PLACEHOLDER_PUBLIC_KEY = pki.setRsaPublicKey(forge.jsbn.BigInteger.ONE, forge.jsbn.BigInteger.ONE);
/**
 * Indexes in TBSCertificate ::= SEQUENCE { [0] version, serial, signature, issuer, validity, subject,
 * subjectPublicKeyInfo, ... }; every certificate here is v3 (a CA must be), so the version is present.
 */
const TBS_SIGNATURE = 2;
const TBS_ISSUER = 3;
const TBS_SUBJECT = 5;
const TBS_SUBJECT_PUBLIC_KEY_INFO = 6;
export const ECDSA_WITH_SHA256_OID = "1.2.840.10045.4.3.2";

/**
 * Builds an X.509 certificate with node-forge and signs it with native crypto:
 * forge's pure-JS RSA signature costs ~50x more and would block the event loop,
 * and forge cannot sign with ECDSA at all.
 */
export function buildSignedCertificate(request: CertificateRequest, signingKey: KeyObject): string {
  const cert = pki.createCertificate();
  cert.publicKey = PLACEHOLDER_PUBLIC_KEY;
  cert.serialNumber = randomSerial().toString("hex");
  cert.validity.notBefore = request.notBefore;
  cert.validity.notAfter = request.notAfter;
  const subject = [{ name: "commonName", value: request.commonName }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions(request.extensions);
  setSubjectKeyIdentifier(cert, request.publicKey);
  // Placeholders too: the AlgorithmIdentifier is replaced by the signing key's below.
  cert.siginfo.algorithmOid = pki.oids.sha256WithRSAEncryption!;
  // getTBSCertificate exists in forge but is missing from @types/node-forge.
  const tbs = (pki as unknown as { getTBSCertificate(c: forge.pki.Certificate): forge.asn1.Asn1 }).getTBSCertificate(cert);
  const algorithm = signatureAlgorithmOf(signingKey);
  const fields = tbs.value as forge.asn1.Asn1[];
  fields[TBS_SIGNATURE] = algorithm();
  if (request.issuerName) fields[TBS_ISSUER] = asn1.fromDer(request.issuerName.toString("binary"));
  fields[TBS_SUBJECT_PUBLIC_KEY_INFO] = asn1.fromDer(subjectPublicKeyInfoDer(request.publicKey).toString("binary"));
  const signature = sign("sha256", Buffer.from(asn1.toDer(tbs).getBytes(), "binary"), signingKey);
  const certificate = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    tbs,
    algorithm(),
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.BITSTRING, false, `\0${signature.toString("binary")}`),
  ]);
  return forge.pem.encode({ type: "CERTIFICATE", body: asn1.toDer(certificate).getBytes() });
}

/**
 * The AlgorithmIdentifier for a SHA-256 signature by this key, as a factory because an ASN.1
 * node appears twice in a certificate. RFC 4055 gives RSA a NULL parameter; RFC 5758
 * forbids any parameter for ECDSA (Go refuses one).
 */
function signatureAlgorithmOf(key: KeyObject): () => forge.asn1.Asn1 {
  const oid = (id: string) => asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer(id).getBytes());
  const sequence = (nodes: forge.asn1.Asn1[]) => asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, nodes);
  if (key.asymmetricKeyType === "rsa") {
    return () => sequence([oid(pki.oids.sha256WithRSAEncryption!), asn1.create(asn1.Class.UNIVERSAL, asn1.Type.NULL, false, "")]);
  }
  if (key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1") {
    return () => sequence([oid(ECDSA_WITH_SHA256_OID)]);
  }
  throw new Error(`cannot sign certificates with a ${key.asymmetricKeyType} key: RSA or ECDSA P-256 only`);
}

function subjectPublicKeyInfoDer(key: KeyObject): Buffer {
  return (key.type === "public" ? key : createPublicKey(key)).export({ type: "spki", format: "der" });
}

/**
 * forge derives a subjectKeyIdentifier from the certificate's public key, which here is the
 * placeholder: every CA would carry the same identifier, and a client that trusts two of them (a
 * CA rotation) could not tell them apart by it. It is RFC 5280 4.2.1.2's method 1 over the real
 * key instead: SHA-1 of the subjectPublicKey bits.
 */
function setSubjectKeyIdentifier(cert: forge.pki.Certificate, publicKey: KeyObject): void {
  const extension = cert.getExtension("subjectKeyIdentifier") as { value?: unknown; subjectKeyIdentifier?: string } | null;
  if (!extension) return;
  // forge's types know only the older boolean argument; its options object keeps the BIT STRING as bytes.
  const fromDer = asn1.fromDer as unknown as (der: string, options: { decodeBitStrings: boolean }) => forge.asn1.Asn1;
  const spki = fromDer(subjectPublicKeyInfoDer(publicKey).toString("binary"), { decodeBitStrings: false });
  // The BIT STRING's content starts with its count of unused bits (0 for a key).
  const keyBits = Buffer.from(((spki.value as forge.asn1.Asn1[])[1]!.value as string).slice(1), "binary");
  const identifier = createHash("sha1").update(keyBits).digest();
  extension.subjectKeyIdentifier = identifier.toString("hex");
  extension.value = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OCTETSTRING, false, identifier.toString("binary"));
}

/** The DER of a certificate's subject Name, to be used as the issuer of what it signs. */
export function subjectNameDerOf(certPem: string): Buffer {
  const certificate = asn1.fromDer(forge.pem.decode(certPem)[0]!.body);
  const tbs = (certificate.value as forge.asn1.Asn1[])[0]!;
  const subject = (tbs.value as forge.asn1.Asn1[])[TBS_SUBJECT]!;
  return Buffer.from(asn1.toDer(subject).getBytes(), "binary");
}
