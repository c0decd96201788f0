import forge from "node-forge";

const { asn1 } = forge;

/** OID of the X.509 Name Constraints extension (RFC 5280 section 4.2.1.10). */
export const NAME_CONSTRAINTS_OID = "2.5.29.30";

/**
 * Builds a critical Name Constraints extension that permits only the given DNS
 * subtrees. forge has no encoder for it, so the DER is assembled by hand:
 * NameConstraints ::= SEQUENCE { permittedSubtrees [0] GeneralSubtrees }
 * GeneralSubtree ::= SEQUENCE { base GeneralName }, dNSName is [2] IA5String.
 */
export function permittedDnsNameConstraints(domains: string[]): object {
  const subtrees = domains.map((domain) =>
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
      asn1.create(asn1.Class.CONTEXT_SPECIFIC, 2, false, domain),
    ]),
  );
  const value = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, subtrees),
  ]);
  return { id: NAME_CONSTRAINTS_OID, critical: true, value: asn1.toDer(value).getBytes() };
}

/** True when host lies inside one of the permitted DNS subtrees (a subtree covers itself and its subdomains). */
export function isPermittedByConstraints(host: string, permitted: readonly string[]): boolean {
  if (permitted.length === 0) return true;
  const lower = host.toLowerCase();
  return permitted.some((domain) => {
    const d = domain.toLowerCase().replace(/^\./, "");
    return lower === d || lower.endsWith(`.${d}`);
  });
}
