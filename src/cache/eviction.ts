export interface EvictionCandidate {
  digest: string;
  size: number;
  lastAccess: number;
}

/**
 * Least-recently-used victims that bring `total` down to `target` bytes.
 * Pinned digests (being read or written) are skipped, never evicted. Pure.
 */
export function chooseEvictions(
  entries: Iterable<EvictionCandidate>,
  total: number,
  target: number,
  isPinned: (digest: string) => boolean,
): string[] {
  if (total <= target) return [];
  const ordered = [...entries].sort((a, b) => a.lastAccess - b.lastAccess || a.digest.localeCompare(b.digest));
  const victims: string[] = [];
  let remaining = total;
  for (const entry of ordered) {
    if (remaining <= target) break;
    if (isPinned(entry.digest)) continue;
    victims.push(entry.digest);
    remaining -= entry.size;
  }
  return victims;
}
