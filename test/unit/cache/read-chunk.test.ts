import { describe, expect, it } from "vitest";
import { readChunkSize } from "../../../src/cache/read-chunk.js";

describe("client read chunks", () => {
  it("are 256 KiB for up to 32 streams, then halve, never below 64 KiB", () => {
    expect(readChunkSize(0)).toBe(256 * 1024);
    expect(readChunkSize(31)).toBe(256 * 1024);
    expect(readChunkSize(32)).toBe(128 * 1024);
    expect(readChunkSize(63)).toBe(128 * 1024);
    expect(readChunkSize(64)).toBe(64 * 1024);
    expect(readChunkSize(10_000)).toBe(64 * 1024);
  });
});
