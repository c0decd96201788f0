/** Digest algorithms we can verify, with the length of their lowercase hex encoding. */
const ALGORITHMS = { sha256: 64, sha512: 128 } as const;

export type DigestAlgorithm = keyof typeof ALGORITHMS;

export interface Digest {
  algorithm: DigestAlgorithm;
  hex: string;
  /** "algorithm:hex", the form registries use on the wire. */
  value: string;
}

/**
 * Parses a digest strictly (OCI image-spec, "Digests"): only sha256 and sha512,
 * lowercase hex of the exact length. Anything else is no cache key, and since
 * the hex becomes a file name, this check is what keeps client input off the filesystem.
 */
export function parseDigest(value: string): Digest | undefined {
  const colon = value.indexOf(":");
  if (colon < 0) return undefined;
  const algorithm = value.slice(0, colon);
  const hex = value.slice(colon + 1);
  if (!Object.hasOwn(ALGORITHMS, algorithm)) return undefined;
  const length = ALGORITHMS[algorithm as DigestAlgorithm];
  if (hex.length !== length || !/^[0-9a-f]+$/.test(hex)) return undefined;
  return { algorithm: algorithm as DigestAlgorithm, hex, value };
}
