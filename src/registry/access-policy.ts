import type { OfflineAccess } from "../config/config.js";

export interface AccessTimings {
  publicTtl: number;
  authTtl: number;
  offlineGrace: number;
}

export interface AccessFacts {
  now: number;
  /** Anonymous readability of the repository, when probed. */
  publicVerdict?: { isPublic: boolean; checkedAt: number };
  /** Last time upstream said yes to this credential for this repository. */
  confirmedAt?: number;
  /** The client sent no credentials. */
  anonymous?: boolean;
}

export type OnlineStep = "allow" | "probe-public" | "check-client";

/**
 * While upstream is reachable: which cheapest step settles access. A public repository is served
 * at once only to a client without credentials: one that sends credentials has them checked, as
 * upstream refuses wrong ones even where anyone may read. Pure.
 */
export function onlineStep(facts: AccessFacts, t: AccessTimings): OnlineStep {
  const verdict = facts.publicVerdict;
  const verdictFresh = verdict !== undefined && facts.now - verdict.checkedAt < t.publicTtl;
  if (verdictFresh && verdict.isPublic && facts.anonymous === true) return "allow";
  if (facts.confirmedAt !== undefined && facts.now - facts.confirmedAt < t.authTtl) return "allow";
  return verdictFresh ? "check-client" : "probe-public";
}

/** While upstream is unreachable: serve or refuse, per --offline-access. Pure. */
export function offlineAllows(facts: AccessFacts, policy: OfflineAccess, t: AccessTimings): boolean {
  const confirmedWithin = (window: number): boolean => facts.confirmedAt !== undefined && facts.now - facts.confirmedAt < window;
  switch (policy) {
    case "all":
      return true;
    case "public":
      return facts.publicVerdict?.isPublic === true || confirmedWithin(t.offlineGrace);
    case "none":
      return (facts.publicVerdict?.isPublic === true && facts.now - facts.publicVerdict.checkedAt < t.publicTtl) || confirmedWithin(t.authTtl);
  }
}
