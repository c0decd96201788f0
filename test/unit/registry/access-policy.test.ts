import { describe, expect, it } from "vitest";
import { offlineAllows, onlineStep, type AccessFacts } from "../../../src/registry/access-policy.js";

const TIMINGS = { publicTtl: 1_000, authTtl: 500, offlineGrace: 10_000 };

describe("access policy (the SECURITY.md table)", () => {
  const facts = (f: Partial<AccessFacts>): AccessFacts => ({ now: 10_000, ...f });
  it.each([
    ["fresh public verdict, anonymous client", facts({ publicVerdict: { isPublic: true, checkedAt: 9_500 }, anonymous: true }), "allow"],
    // Upstream refuses wrong credentials even where anyone may read: a client that sends any has them checked.
    ["fresh public verdict, client with credentials", facts({ publicVerdict: { isPublic: true, checkedAt: 9_500 }, anonymous: false }), "check-client"],
    ["fresh public verdict, credentials confirmed", facts({ publicVerdict: { isPublic: true, checkedAt: 9_500 }, anonymous: false, confirmedAt: 9_800 }), "allow"],
    ["stale public verdict", facts({ publicVerdict: { isPublic: true, checkedAt: 1_000 } }), "probe-public"],
    ["fresh private verdict, no confirmation", facts({ publicVerdict: { isPublic: false, checkedAt: 9_500 } }), "check-client"],
    ["fresh confirmation", facts({ confirmedAt: 9_800 }), "allow"],
    ["old confirmation, no verdict", facts({ confirmedAt: 1_000 }), "probe-public"],
  ] as const)("online, %s: %s", (_label, f, step) => {
    expect(onlineStep(f, TIMINGS)).toBe(step);
  });

  it.each([
    ["public", "known public repository", facts({ publicVerdict: { isPublic: true, checkedAt: 0 } }), true],
    ["public", "confirmed within the grace", facts({ confirmedAt: 5_000 }), true],
    ["public", "confirmed before the grace", facts({ now: 100_000, confirmedAt: 5_000 }), false],
    ["public", "nothing known", facts({}), false],
    ["none", "stale public verdict", facts({ publicVerdict: { isPublic: true, checkedAt: 0 } }), false],
    ["none", "confirmed within the auth TTL", facts({ confirmedAt: 9_800 }), true],
    ["all", "nothing known", facts({}), true],
  ] as const)("offline %s, %s: %s", (policy, _label, f, allowed) => {
    expect(offlineAllows(f, policy, TIMINGS)).toBe(allowed);
  });
});
