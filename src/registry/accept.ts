/**
 * Normalizes Accept header lines into a stable key: all lines merged, split on
 * commas, parameters (q=...) dropped, lowercased, de-duplicated, sorted. Two
 * clients asking for the same set of media types share one tag answer.
 */
export function normalizeAccept(accept: string | string[] | undefined): string[] {
  const lines = accept === undefined ? [] : Array.isArray(accept) ? accept : [accept];
  const types = new Set<string>();
  for (const line of lines) {
    for (const part of line.split(",")) {
      const type = part.split(";")[0]!.trim().toLowerCase();
      if (type.length > 0) types.add(type);
    }
  }
  return [...types].sort();
}

/** True when a manifest of this media type may answer a request with this Accept set. */
export function acceptAllows(acceptSet: readonly string[], mediaType: string): boolean {
  if (acceptSet.length === 0) return true;
  const type = mediaType.split(";")[0]!.trim().toLowerCase();
  return acceptSet.some((a) => a === "*/*" || a === type || (a.endsWith("/*") && type.startsWith(a.slice(0, -1))));
}

/**
 * True when the Accept set names this media type itself. Registries differ on what they answer
 * wildcards and absent Accept headers (distribution refuses an OCI manifest to a wildcard and serves a
 * Docker manifest by digest whatever is asked), so only an Accept that names the type is answered
 * from the cache; any other is the upstream's to answer.
 */
export function acceptNames(acceptSet: readonly string[], mediaType: string): boolean {
  return acceptSet.includes(mediaType.split(";")[0]!.trim().toLowerCase());
}
