import { describe, expect, it } from "vitest";
import { chooseEvictions } from "../../../src/cache/eviction.js";

const entry = (digest: string, size: number, lastAccess: number) => ({ digest, size, lastAccess });

describe("chooseEvictions", () => {
  it("evicts least recently used first until under the target", () => {
    const entries = [entry("new", 10, 300), entry("old", 10, 100), entry("mid", 10, 200)];
    expect(chooseEvictions(entries, 30, 15, () => false)).toEqual(["old", "mid"]);
  });

  it("evicts nothing when under the target", () => {
    expect(chooseEvictions([entry("a", 10, 1)], 10, 10, () => false)).toEqual([]);
  });

  it("never evicts a pinned digest, even the oldest", () => {
    const entries = [entry("reading", 50, 1), entry("b", 10, 2), entry("c", 10, 3)];
    expect(chooseEvictions(entries, 70, 55, (d) => d === "reading")).toEqual(["b", "c"]);
  });

  it("gives up rather than evicting pins when everything is pinned", () => {
    expect(chooseEvictions([entry("a", 10, 1)], 10, 0, () => true)).toEqual([]);
  });
});
