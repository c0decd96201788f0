import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createLogger } from "../../../src/log/logger.js";
import { UpstreamHealth } from "../../../src/upstream/health.js";

const PROBE_MS = 1_000;

describe("UpstreamHealth, bounded", () => {
  let probed: string[];
  let answer: (authority: string) => Promise<boolean>;
  const make = (capacity: number): UpstreamHealth => new UpstreamHealth(1, PROBE_MS, (a) => (probed.push(a), answer(a)), createLogger("silent"), capacity);
  const states = (health: UpstreamHealth): Record<string, string> => Object.fromEntries(health.snapshot().map((h) => [h.host, h.state]));

  beforeEach(() => {
    vi.useFakeTimers();
    probed = [];
    answer = async () => false;
  });
  afterEach(() => vi.useRealTimers());

  it("forgets up hosts, least recently used first, and keeps down ones while up ones remain", () => {
    const health = make(3);
    health.recordFailure("down.test", "ECONNREFUSED");
    health.recordSuccess("a.test");
    health.recordSuccess("b.test");
    for (let i = 0; i < 10; i++) health.recordSuccess(`new${i}.test`);
    expect(states(health)).toEqual({ "down.test": "down", "new8.test": "up", "new9.test": "up" });
    expect(health.isDown("down.test")).toBe(true);
  });

  it("when every host is down, forgets the least recently used one and stops probing it", async () => {
    const health = make(2);
    health.recordFailure("d1.test", "ECONNREFUSED");
    health.recordFailure("d2.test", "ECONNREFUSED");
    health.recordFailure("d3.test", "ECONNREFUSED");
    expect(states(health)).toEqual({ "d2.test": "down", "d3.test": "down" });
    expect(health.isDown("d1.test")).toBe(false);
    await vi.advanceTimersByTimeAsync(PROBE_MS * 3);
    expect(new Set(probed)).toEqual(new Set(["d2.test", "d3.test"]));
    expect(probed).toHaveLength(6);
    health.stop();
  });

  it("a probe that was running when its host was forgotten schedules no more probes", async () => {
    const health = make(1);
    let finish: (ok: boolean) => void = () => undefined;
    answer = () => new Promise((resolve) => (finish = resolve));
    health.recordFailure("slow.test", "timeout");
    await vi.advanceTimersByTimeAsync(PROBE_MS);
    expect(probed).toEqual(["slow.test"]);
    health.recordFailure("other.test", "ECONNREFUSED");
    finish(false);
    answer = async () => false;
    await vi.advanceTimersByTimeAsync(PROBE_MS * 3);
    expect(probed.filter((a) => a === "slow.test")).toHaveLength(1);
    expect(probed.filter((a) => a === "other.test")).toHaveLength(3);
    expect(health.isDown("slow.test")).toBe(false);
    health.stop();
  });
});
