export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/**
 * Parses a WWW-Authenticate header (RFC 9110 section 11.6.1) into challenges:
 * `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"`.
 * Pure and tolerant: unparsable parts are skipped, never thrown on.
 */
export function parseWwwAuthenticate(header: string | undefined): Challenge[] {
  if (!header || header.length > 4096) return [];
  const challenges: Challenge[] = [];
  const re = /\s*([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)(?:\s+((?:[A-Za-z0-9!#$%&'*+.^_`|~-]+\s*=\s*(?:"(?:[^"\\]|\\.)*"|[^\s,"]*)\s*,?\s*)*))?\s*,?/gy;
  let match: RegExpExecArray | null;
  while (re.lastIndex < header.length && (match = re.exec(header)) !== null) {
    if (match[0].length === 0) break;
    const params: Record<string, string> = {};
    const paramRe = /([A-Za-z0-9!#$%&'*+.^_`|~-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))/g;
    let p: RegExpExecArray | null;
    while ((p = paramRe.exec(match[2] ?? "")) !== null) {
      params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, "$1") : p[3]!;
    }
    challenges.push({ scheme: match[1]!.toLowerCase(), params });
  }
  return challenges;
}
