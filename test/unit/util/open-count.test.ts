import { describe, expect, it } from "vitest";
import { readChunkSize } from "../../../src/cache/read-chunk.js";
import { OpenCount } from "../../../src/util/open-count.js";

describe("OpenCount", () => {
  it("plans each opening by what is open right now, each counted once however often it reports closing", () => {
    const streams = new OpenCount(readChunkSize);
    const slots = Array.from({ length: 40 }, () => streams.open());
    expect(slots[0]!.plan).toBe(256 * 1024);
    expect(slots[39]!.plan).toBe(128 * 1024);
    for (const slot of slots) {
      slot.closed();
      slot.closed();
    }
    expect(streams.open().plan).toBe(256 * 1024);
  });
});
