import { createHash } from "node:crypto";

/**
 * Highest-random-weight (rendezvous) hashing: each member scores each digest, the highest score
 * owns it. When a member leaves, only what it owned moves, and every replica that sees the same
 * members computes the same owner without talking to the others. Pure.
 */
export function rankMembers(digest: string, members: readonly string[]): string[] {
  const score = (member: string): bigint => createHash("sha256").update(member).update("\0").update(digest).digest().readBigUInt64BE(0);
  return [...members].map((member) => ({ member, score: score(member) })).sort((a, b) => (b.score > a.score ? 1 : b.score < a.score ? -1 : a.member.localeCompare(b.member))).map((m) => m.member);
}
