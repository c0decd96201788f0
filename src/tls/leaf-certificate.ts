/**
 * A registry host's leaf certificate, encoded straight to DER. Minting one per new host is on
 * the path of that host's first handshake; node-forge's generic builder took ~0.7 ms of
 * JavaScript per leaf, this ~0.02 ms. Everything but the host, serial and validity is the
 * same for every leaf of an issuer. Pure: no I/O.
 */
import { isIP } from "node:net";
import { ECDSA_WITH_SHA256_OID } from "./certificate-builder.js";
import { explicit, implicitPrimitive, oid, sequence, Tag, time, tlv } from "./der.js";

export interface LeafFields {
  host: string;
  /** More names (DNS or IP) the leaf is valid for, after `host`: the mirror endpoint's. */
  otherNames?: readonly string[];
  /** 16 bytes, top bit clear (a positive INTEGER). */
  serial: Buffer;
  notBefore: Date;
  notAfter: Date;
  /** The issuer's subject Name, DER. */
  issuerName: Buffer;
  /** The leaf key's SubjectPublicKeyInfo, DER. */
  subjectPublicKeyInfo: Buffer;
}

/** AlgorithmIdentifier for ecdsa-with-SHA256 (RFC 5758: no parameters). */
const ECDSA_WITH_SHA256 = sequence(oid(ECDSA_WITH_SHA256_OID));

const VERSION_3 = explicit(0, tlv(Tag.INTEGER, Buffer.from([2])));
const COMMON_NAME = oid("2.5.4.3");
const TRUE = tlv(Tag.BOOLEAN, Buffer.from([0xff]));
/** basicConstraints cA FALSE, keyUsage digitalSignature (critical), extKeyUsage serverAuth. */
const FIXED_EXTENSIONS = [
  sequence(oid("2.5.29.19"), tlv(Tag.OCTET_STRING, sequence())),
  sequence(oid("2.5.29.15"), TRUE, tlv(Tag.OCTET_STRING, tlv(Tag.BIT_STRING, Buffer.from([7, 0x80])))),
  sequence(oid("2.5.29.37"), tlv(Tag.OCTET_STRING, sequence(oid("1.3.6.1.5.5.7.3.1")))),
];
const SUBJECT_ALT_NAME = oid("2.5.29.17");
/**
 * X.520's upper bound for a commonName; longer host names, and IP literals (OpenSSL checks a
 * CN against DNS name constraints), are named by the SAN alone.
 */
const MAX_COMMON_NAME = 64;

export function leafTbsDer(fields: LeafFields): Buffer {
  const hostIsIp = isIP(fields.host) !== 0;
  // RFC 5280 section 4.2.1.6: with an empty subject the SAN must be critical.
  const withCommonName = !hostIsIp && fields.host.length <= MAX_COMMON_NAME;
  const subject = withCommonName
    ? sequence(tlv(Tag.SET, sequence(COMMON_NAME, tlv(Tag.UTF8_STRING, Buffer.from(fields.host, "utf8")))))
    : sequence();
  const generalNames = [fields.host, ...(fields.otherNames ?? [])].map(generalName);
  const altName = sequence(SUBJECT_ALT_NAME, ...(withCommonName ? [] : [TRUE]), tlv(Tag.OCTET_STRING, sequence(...generalNames)));
  return sequence(
    VERSION_3,
    tlv(Tag.INTEGER, fields.serial),
    ECDSA_WITH_SHA256,
    fields.issuerName,
    sequence(time(fields.notBefore), time(fields.notAfter)),
    subject,
    fields.subjectPublicKeyInfo,
    explicit(3, sequence(...FIXED_EXTENSIONS, altName)),
  );
}

/** Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING } */
export function certificatePem(tbs: Buffer, signature: Buffer): string {
  const der = sequence(tbs, ECDSA_WITH_SHA256, tlv(Tag.BIT_STRING, Buffer.from([0]), signature));
  const lines = der.toString("base64").match(/.{1,64}/g)!;
  return `-----BEGIN CERTIFICATE-----\n${lines.join("\n")}\n-----END CERTIFICATE-----\n`;
}

/** GeneralName (RFC 5280 section 4.2.1.6): iPAddress [7] for an IP literal, dNSName [2] otherwise. */
function generalName(name: string): Buffer {
  return isIP(name) !== 0 ? implicitPrimitive(7, ipBytes(name)) : implicitPrimitive(2, Buffer.from(name, "latin1"));
}

function ipBytes(ip: string): Buffer {
  if (isIP(ip) === 4) return Buffer.from(ip.split(".").map(Number));
  // A zone ("%eth0") names an interface, not part of the address; a dotted tail is IPv4 in the low 32 bits.
  const address = ip.split("%")[0]!.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_m, a, b, c, d) =>
    `${((+a << 8) | +b).toString(16)}:${((+c << 8) | +d).toString(16)}`,
  );
  const [head, tail] = address.includes("::") ? address.split("::") : [address, undefined];
  const groups = (part: string | undefined) => (part ? part.split(":") : []);
  const headGroups = groups(head);
  const tailGroups = groups(tail);
  const zeros = tail === undefined ? [] : Array<string>(8 - headGroups.length - tailGroups.length).fill("0");
  const bytes = Buffer.alloc(16);
  [...headGroups, ...zeros, ...tailGroups].forEach((g, i) => bytes.writeUInt16BE(Number.parseInt(g, 16), i * 2));
  return bytes;
}
