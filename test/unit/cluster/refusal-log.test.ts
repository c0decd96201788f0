import { afterEach, describe, expect, it, vi } from "vitest";
import { RefusalLog } from "../../../src/cluster/refusal-log.js";
import { createLogger } from "../../../src/log/logger.js";

interface Line {
  msg: string;
  cause: string;
  reason?: string;
  count: number;
  clients: string[];
  fromOthers?: number;
}

function capture(): { log: RefusalLog; lines: Line[] } {
  const lines: Line[] = [];
  const log = new RefusalLog(createLogger("debug", { write: (line: string) => void lines.push(JSON.parse(line) as Line) }));
  return { log, lines };
}

afterEach(() => vi.useRealTimers());

describe("RefusalLog: refused peer connections, one line per cause per minute", () => {
  it("1000 refusals of one cause: one line at once, one with the rest a minute later, with counts and addresses", () => {
    vi.useFakeTimers();
    const { log, lines } = capture();
    for (let i = 0; i < 1000; i++) log.note("no-certificate", `10.0.0.${i % 7}`);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ msg: "peer channel: refused clients without a certificate", cause: "no-certificate", count: 1, clients: ["10.0.0.0"] });
    vi.advanceTimersByTime(60_000);
    expect(lines).toHaveLength(2);
    // Five addresses named; the refusals of the other two are counted.
    expect(lines[1]).toMatchObject({ cause: "no-certificate", count: 999, clients: ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"] });
    const unnamed = Array.from({ length: 999 }, (_, k) => (k + 1) % 7).filter((last) => last === 0 || last === 6).length;
    expect(lines[1]!.fromOthers).toBe(unnamed);
    expect(log.counts).toEqual({ "no-certificate": 1000 });
  });

  it("each cause and reason has its own line; a quiet minute writes nothing, and the next refusal is logged at once", () => {
    vi.useFakeTimers();
    const { log, lines } = capture();
    log.note("other-ca", "10.0.0.9", "UNABLE_TO_VERIFY_LEAF_SIGNATURE");
    log.note("handshake", "10.0.0.8", "ERR_TLS_HANDSHAKE_TIMEOUT");
    log.note("handshake", "10.0.0.8", "ECONNRESET");
    expect(lines.map((l) => [l.msg, l.reason])).toEqual([
      ["peer channel: refused client certificates from another CA", "UNABLE_TO_VERIFY_LEAF_SIGNATURE"],
      ["peer channel: refused connections that failed the TLS handshake", "ERR_TLS_HANDSHAKE_TIMEOUT"],
      ["peer channel: refused connections that failed the TLS handshake", "ECONNRESET"],
    ]);
    vi.advanceTimersByTime(180_000);
    expect(lines).toHaveLength(3);
    log.note("other-ca", undefined, "UNABLE_TO_VERIFY_LEAF_SIGNATURE");
    expect(lines[3]).toMatchObject({ cause: "other-ca", count: 1, clients: ["unknown"] });
  });

  it("at close, what was counted since the last line is written, not lost", () => {
    vi.useFakeTimers();
    const { log, lines } = capture();
    for (let i = 0; i < 3; i++) log.note("not-a-peer", "10.0.0.1");
    log.close();
    expect(lines.map((l) => l.count)).toEqual([1, 2]);
    vi.advanceTimersByTime(120_000);
    expect(lines).toHaveLength(2);
  });
});
