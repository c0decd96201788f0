import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { rootCertificates } from "node:tls";
import { RegcacheError } from "../errors.js";

/** Where Debian, Ubuntu, Alpine (and RHEL, through the second path) keep the system bundle. */
const SYSTEM_BUNDLES = ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"];

export class TrustStoreError extends RegcacheError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("CONFIG", message, options);
  }
}

/**
 * The CAs upstream registries are verified against: Node's bundled roots, the
 * system bundle (where operators add corporate CAs), and --upstream-ca files.
 * Verification itself is never switched off.
 */
export function loadUpstreamTrust(extraCaFiles: readonly string[]): string[] {
  const cas = [...rootCertificates];
  for (const bundle of SYSTEM_BUNDLES) {
    try {
      cas.push(readFileSync(bundle, "utf8"));
      break;
    } catch {
      // Absent on this system: the next candidate or Node's bundle serves.
    }
  }
  for (const file of extraCaFiles) {
    let pem: string;
    try {
      pem = readFileSync(file, "utf8");
    } catch (err) {
      throw new TrustStoreError(`cannot read --upstream-ca ${file}: ${(err as Error).message}`, { cause: err });
    }
    checkCertificates(pem, file);
    cas.push(pem);
  }
  return cas;
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/**
 * TLS would ignore a file without a certificate (a key, a DER file, the wrong path) without a word,
 * and every pull from that registry would then fail verification: refused at start instead.
 */
function checkCertificates(pem: string, file: string): void {
  const blocks = pem.match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) throw new TrustStoreError(`--upstream-ca ${file} holds no PEM certificate (a "-----BEGIN CERTIFICATE-----" block)`);
  blocks.forEach((block, i) => {
    try {
      new X509Certificate(block);
    } catch (err) {
      throw new TrustStoreError(`--upstream-ca ${file}: certificate ${i + 1} of ${blocks.length} cannot be parsed: ${(err as Error).message}`, { cause: err });
    }
  });
}
