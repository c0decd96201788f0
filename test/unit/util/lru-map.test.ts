import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { LruMap } from "../../../src/util/lru-map.js";

describe("LruMap", () => {
  it("drops the least recently used entry; get() and set() count as use, peek() does not", () => {
    const evicted: string[] = [];
    const lru = new LruMap<string, number>(3, { onEvict: (key) => evicted.push(key) });
    lru.set("a", 1).set("b", 2).set("c", 3);
    expect(lru.get("a")).toBe(1);
    expect(lru.peek("b")).toBe(2);
    lru.set("d", 4);
    expect(evicted).toEqual(["b"]);
    lru.set("c", 30);
    lru.set("e", 5);
    expect(evicted).toEqual(["b", "a"]);
    expect([...lru.entries()]).toEqual([["d", 4], ["c", 30], ["e", 5]]);
  });

  it("tells onEvict of capacity evictions only, not of an overwrite", () => {
    const evicted: string[] = [];
    const lru = new LruMap<string, number>(2, { onEvict: (key) => evicted.push(key) });
    lru.set("a", 1).set("a", 2).set("b", 3);
    expect(evicted).toEqual([]);
    lru.set("c", 4);
    expect(evicted).toEqual(["a"]);
  });

  it("drops the least recently used evictable entry first, and the least recently used one when none is", () => {
    const evicted: string[] = [];
    const lru = new LruMap<string, { pinned: boolean }>(3, { evictable: (v) => !v.pinned, onEvict: (key) => evicted.push(key) });
    lru.set("p1", { pinned: true }).set("u1", { pinned: false }).set("p2", { pinned: true });
    lru.set("u2", { pinned: false });
    expect(evicted).toEqual(["u1"]);
    // Only u2 may go, but it is the entry being written: the oldest pinned one goes instead.
    lru.set("p3", { pinned: true });
    expect(evicted).toEqual(["u1", "u2"]);
    lru.set("p4", { pinned: true });
    expect(evicted).toEqual(["u1", "u2", "p1"]);
    expect([...lru.entries()].map(([k]) => k)).toEqual(["p2", "p3", "p4"]);
  });

  it("never drops the entry a set() writes, even when it is the only evictable one", () => {
    const lru = new LruMap<string, boolean>(2, { evictable: (pinned) => !pinned });
    lru.set("p1", true).set("p2", true).set("u", false);
    expect([...lru.entries()].map(([k]) => k)).toEqual(["p2", "u"]);
  });

  it("refuses a capacity below 1", () => {
    expect(() => new LruMap(0)).toThrow(RangeError);
    expect(() => new LruMap(1.5)).toThrow(RangeError);
  });

  it("behaves like a model: at most `capacity` entries, the most recently used ones, with their last values", () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant("set" as const), key: fc.integer({ min: 0, max: 12 }), value: fc.integer() }),
      fc.record({ kind: fc.constant("get" as const), key: fc.integer({ min: 0, max: 12 }) }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.array(op, { maxLength: 200 }), (capacity, ops) => {
        const lru = new LruMap<number, number>(capacity);
        // Most recently used last.
        let model: [number, number][] = [];
        for (const o of ops) {
          const at = model.findIndex(([k]) => k === o.key);
          if (o.kind === "set") {
            if (at >= 0) model.splice(at, 1);
            model.push([o.key, o.value]);
            if (model.length > capacity) model = model.slice(1);
            lru.set(o.key, o.value);
          } else {
            const expected = at >= 0 ? model[at]![1] : undefined;
            if (at >= 0) model.push(...model.splice(at, 1));
            expect(lru.get(o.key)).toBe(expected);
          }
          expect([...lru.entries()]).toEqual(model);
        }
      }),
    );
  });
});
