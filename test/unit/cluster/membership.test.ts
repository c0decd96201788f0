import { describe, expect, it } from "vitest";
import { Membership, peerAddress } from "../../../src/cluster/membership.js";
import { createLogger } from "../../../src/log/logger.js";

const logger = createLogger("silent");

function membership(answers: () => string[] | Error, healthy: (address: string) => boolean) {
  return new Membership(
    { staticPeers: ["10.0.0.9:3129"], dnsName: "regcache-peers.regcache.svc.cluster.local", peerPort: 3129, self: "10.0.0.1:3129", refreshMs: 60_000 },
    async (address) => {
      if (!healthy(address)) throw new Error("connection refused");
    },
    logger,
    async () => {
      const found = answers();
      if (found instanceof Error) throw found;
      return found;
    },
  );
}

describe("Membership", () => {
  it("lists the DNS answers and static peers that answer their health check, never itself", async () => {
    const m = membership(() => ["10.0.0.1", "10.0.0.2", "10.0.0.3", "fd00::4"], (a) => a !== "10.0.0.3:3129");
    await m.start();
    expect(m.live().sort()).toEqual(["10.0.0.2:3129", "10.0.0.9:3129", "[fd00::4]:3129"]);
    expect(m.snapshot().find((p) => p.address === "10.0.0.3:3129")).toMatchObject({ live: false, lastError: "connection refused" });
    m.stop();
  });

  it("drops a replica that left the DNS answer, and skips a peer that failed a request at once", async () => {
    let answer = ["10.0.0.2", "10.0.0.3"];
    const m = membership(() => answer, () => true);
    await m.start();
    expect(m.live()).toContain("10.0.0.3:3129");
    m.reportFailure("10.0.0.2:3129", "socket hang up");
    expect(m.live()).not.toContain("10.0.0.2:3129");
    answer = ["10.0.0.2"];
    await (m as unknown as { refresh(): Promise<void> }).refresh();
    expect(m.live().sort()).toEqual(["10.0.0.2:3129", "10.0.0.9:3129"]);
    m.stop();
  });

  it("keeps the peers it knew when DNS fails for a moment", async () => {
    let fail = false;
    const m = membership(() => (fail ? new Error("EAI_AGAIN") : ["10.0.0.2"]), () => true);
    await m.start();
    fail = true;
    await (m as unknown as { refresh(): Promise<void> }).refresh();
    expect(m.live().sort()).toEqual(["10.0.0.2:3129", "10.0.0.9:3129"]);
    m.stop();
  });

  it("names peers host:port, IPv6 bracketed", () => {
    expect(peerAddress("10.0.0.2", 3129)).toBe("10.0.0.2:3129");
    expect(peerAddress("fd00::4", 3129)).toBe("[fd00::4]:3129");
  });
});
