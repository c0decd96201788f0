import { describe, expect, it } from "vitest";
import { newerRecord } from "../../../src/cache/shared-records.js";

describe("newerRecord: the local or the fleet's copy of a record", () => {
  const tag = (recorded: number) => ({ digest: `sha256:${"a".repeat(64)}`, mediaType: "m", size: 1, recorded });
  it.each([
    ["only local", tag(1), undefined, tag(1)],
    ["only shared", undefined, tag(2), tag(2)],
    ["neither", undefined, undefined, undefined],
    ["tag answers: the later recorded", tag(1), tag(2), tag(2)],
    ["tag answers: local when later", tag(3), tag(2), tag(3)],
    ["tag answers: local on a tie", tag(2), { ...tag(2), digest: "other" }, tag(2)],
    ["verdicts by checkedAt", { isPublic: false, checkedAt: 5 }, { isPublic: true, checkedAt: 9 }, { isPublic: true, checkedAt: 9 }],
    ["confirmations are times", 100, 50, 100],
    ["confirmations: the later", 50, 100, 100],
    ["undated (a challenge): local", "Bearer realm=a", "Bearer realm=b", "Bearer realm=a"],
  ])("%s", (_name, local, shared, expected) => {
    expect(newerRecord<unknown>(local, shared, 1_000)).toEqual(expected);
  });

  it("ignores a shared record dated more than a minute ahead (a skewed clock, or a forged verdict)", () => {
    const now = 1_000_000;
    const forged = { isPublic: true, checkedAt: now + 3_600_000 };
    expect(newerRecord<unknown>({ isPublic: false, checkedAt: now - 10 }, forged, now)).toEqual({ isPublic: false, checkedAt: now - 10 });
    expect(newerRecord<unknown>(undefined, forged, now)).toBeUndefined();
    expect(newerRecord<unknown>(undefined, { isPublic: true, checkedAt: now + 30_000 }, now)).toEqual({ isPublic: true, checkedAt: now + 30_000 });
  });
});
