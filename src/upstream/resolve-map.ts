import type { HostPort, ResolveRule } from "../config/parse.js";

/** Maps a requested host:port to the address to dial, per --resolve rules (curl's --connect-to). */
export class ResolveMap {
  private readonly rules = new Map<string, HostPort>();

  constructor(rules: readonly ResolveRule[]) {
    for (const rule of rules) this.rules.set(`${rule.from.host}:${rule.from.port}`, rule.to);
  }

  lookup(host: string, port: number): HostPort | undefined {
    return this.rules.get(`${host.toLowerCase()}:${port}`);
  }
}
