import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { rankMembers } from "../../../src/cluster/rendezvous.js";

const members = ["10.0.0.1:3129", "10.0.0.2:3129", "10.0.0.3:3129", "10.0.0.4:3129"];
const digest = fc.stringMatching(/^[0-9a-f]{64}$/).map((hex) => `sha256:${hex}`);

describe("rankMembers (rendezvous hashing)", () => {
  it("ranks every member once, in the same order whatever order they are listed in", () => {
    fc.assert(
      fc.property(digest, fc.shuffledSubarray(members, { minLength: 1 }), (d, listed) => {
        const ranked = rankMembers(d, listed);
        expect([...ranked].sort()).toEqual([...listed].sort());
        expect(rankMembers(d, [...listed].reverse())).toEqual(ranked);
      }),
    );
  });

  it("moves only what the leaving member owned: everyone else keeps their digests", () => {
    fc.assert(
      fc.property(fc.array(digest, { minLength: 50, maxLength: 50 }), fc.constantFrom(...members), (digests, leaving) => {
        const rest = members.filter((m) => m !== leaving);
        for (const d of digests) {
          const before = rankMembers(d, members)[0];
          if (before !== leaving) expect(rankMembers(d, rest)[0]).toBe(before);
        }
      }),
    );
  });

  it("spreads ownership: each of 4 members owns between 15% and 35% of 2000 digests", () => {
    const owned = new Map<string, number>();
    for (let i = 0; i < 2000; i++) {
      const owner = rankMembers(`sha256:${i.toString(16).padStart(64, "0")}`, members)[0]!;
      owned.set(owner, (owned.get(owner) ?? 0) + 1);
    }
    for (const m of members) expect(owned.get(m) ?? 0).toBeGreaterThan(300);
    for (const m of members) expect(owned.get(m) ?? 0).toBeLessThan(700);
  });
});
