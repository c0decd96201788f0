/**
 * Why this Node.js cannot run regcache, or null when it can. `running` and `minimum` are
 * "MAJOR.MINOR[.PATCH]"; versions compare part by part, missing parts counting as 0.
 */
export function unsupportedNode(running: string, minimum: string): string | null {
  const have = running.split(".").map(Number);
  const need = minimum.split(".").map(Number);
  for (let i = 0; i < need.length; i++) {
    const difference = (have[i] ?? 0) - need[i]!;
    if (difference > 0) return null;
    if (difference < 0) {
      return `Node.js ${minimum} or newer is required (this is ${running}); on Debian 12 install it from NodeSource or use the official binaries: https://nodejs.org/en/download`;
    }
  }
  return null;
}
