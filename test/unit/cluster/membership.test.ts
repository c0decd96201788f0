import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { Membership, peerAddress } from "../../../src/cluster/membership.js";
import { createLogger, type Logger } from "../../../src/log/logger.js";

const silent = createLogger("silent");

/** A logger whose lines land in `lines`, parsed. */
function capturing(lines: { msg: string; [key: string]: unknown }[]): Logger {
  return createLogger(
    "info",
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(JSON.parse(chunk.toString()) as { msg: string });
        done();
      },
    }),
  );
}

function nxdomain(): Error {
  return Object.assign(new Error("getaddrinfo ENOTFOUND regcache-peers.regcache.svc.cluster.local"), { code: "ENOTFOUND" });
}

function membership(answers: () => string[] | Error, healthy: (address: string) => boolean, logger = silent) {
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

  it("with a name that does not resolve from the start, serves alone with its static peers, says so once, and says when it resolves", async () => {
    const lines: { msg: string; [key: string]: unknown }[] = [];
    let answer: () => string[] | Error = nxdomain;
    const m = membership(() => answer(), () => true, capturing(lines));
    const refresh = (m as unknown as { refresh(): Promise<void> }).refresh.bind(m);
    await m.start();
    await refresh();
    await refresh();
    expect(m.live()).toEqual(["10.0.0.9:3129"]);
    expect(lines.filter((l) => l.msg.startsWith("cannot resolve --peers-dns"))).toEqual([expect.objectContaining({ msg: "cannot resolve --peers-dns; serving as a single replica until it resolves", kept: [] })]);
    answer = () => ["10.0.0.2"];
    await refresh();
    expect(m.live().sort()).toEqual(["10.0.0.2:3129", "10.0.0.9:3129"]);
    expect(lines.filter((l) => l.msg === "--peers-dns resolves again")).toHaveLength(1);
    answer = () => Object.assign(new Error("getaddrinfo EAI_AGAIN"), { code: "EAI_AGAIN" });
    await refresh();
    expect(m.live().sort()).toEqual(["10.0.0.2:3129", "10.0.0.9:3129"]);
    expect(lines.at(-1)).toMatchObject({ msg: "cannot resolve --peers-dns; keeping the peers it last named", kept: ["10.0.0.2:3129"] });
    m.stop();
  });

  it("keeps the peers it knew when the name vanishes, and drops the ones whose health check then fails", async () => {
    let answer: () => string[] | Error = () => ["10.0.0.2", "10.0.0.3"];
    let down = "";
    const m = membership(() => answer(), (a) => a !== down);
    await m.start();
    answer = nxdomain;
    down = "10.0.0.3:3129";
    await (m as unknown as { refresh(): Promise<void> }).refresh();
    expect(m.live().sort()).toEqual(["10.0.0.2:3129", "10.0.0.9:3129"]);
    m.stop();
  });

  it("asks DNS for addresses of the family it advertises in: a dual-stack Service names each pod twice", async () => {
    const asked: number[] = [];
    const resolver = (self: string) =>
      new Membership({ staticPeers: [], dnsName: "regcache-peers", peerPort: 3129, self, refreshMs: 60_000 }, async () => undefined, silent, async (_name, family) => {
        asked.push(family);
        return [];
      });
    for (const self of ["10.0.0.1:3129", "[fd00::1]:3129", "regcache-0.regcache-peers:3129"]) {
      const m = resolver(self);
      await m.start();
      m.stop();
    }
    expect(asked).toEqual([4, 6, 0]);
  });

  it("names peers host:port, IPv6 bracketed", () => {
    expect(peerAddress("10.0.0.2", 3129)).toBe("10.0.0.2:3129");
    expect(peerAddress("fd00::4", 3129)).toBe("[fd00::4]:3129");
  });
});
