import { describe, expect, it } from "vitest";
import type { FleetIndex } from "../../../src/fleet/fleet-index.js";
import { FleetRecords } from "../../../src/fleet/fleet-records.js";

function indexWith(records: Map<string, unknown>, failing = false): FleetIndex {
  return {
    available: true,
    getRecord: async (key: string) => {
      if (failing) throw new Error("down");
      return records.get(key);
    },
    putRecord: async (key: string, value: unknown) => {
      if (failing) throw new Error("down");
      records.set(key, value);
    },
  } as unknown as FleetIndex;
}

describe("FleetRecords", () => {
  it("shares tag answers, public verdicts and challenges; confirmations only with a shared secret", () => {
    const perReplica = new FleetRecords(indexWith(new Map()), false);
    const shared = new FleetRecords(indexWith(new Map()), true);
    for (const key of ["tag:quay.io/a:v1@x", "meta:public:quay.io/a", "meta:challenge:quay.io"]) {
      expect(perReplica.shares(key), key).toBe(true);
      expect(shared.shares(key), key).toBe(true);
    }
    expect(perReplica.shares("meta:auth:abc")).toBe(false);
    expect(shared.shares("meta:auth:abc")).toBe(true);
    expect(shared.shares("blob:sha256:x")).toBe(false);
  });

  it("reads and writes through the index, and answers 'none' without rejecting when it is down", async () => {
    const records = new Map<string, unknown>();
    const up = new FleetRecords(indexWith(records), false);
    up.put("tag:k", { recorded: 1 });
    await new Promise((r) => setImmediate(r));
    expect(await up.get("tag:k")).toEqual({ recorded: 1 });
    const down = new FleetRecords(indexWith(records, true), false);
    expect(await down.get("tag:k")).toBeUndefined();
    expect(() => down.put("tag:k", 2)).not.toThrow();
  });

  it("does not wait for an index known to be down", async () => {
    let asked = 0;
    const index = { available: false, getRecord: async () => (asked += 1) } as unknown as FleetIndex;
    expect(await new FleetRecords(index, false).get("tag:k")).toBeUndefined();
    expect(asked).toBe(0);
  });
});
