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
    try {
      cas.push(readFileSync(file, "utf8"));
    } catch (err) {
      throw new TrustStoreError(`cannot read --upstream-ca ${file}: ${(err as Error).message}`, { cause: err });
    }
  }
  return cas;
}
