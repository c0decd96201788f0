import { describe, expect, it } from "vitest";
import { Cluster } from "../../../src/cluster/cluster.js";
import type { Membership } from "../../../src/cluster/membership.js";
import type { PeerClient, PeerTagAnswer, ReplicatedTag } from "../../../src/cluster/peer-client.js";
import { tagRankKey } from "../../../src/cluster/cluster.js";
import { createLogger } from "../../../src/log/logger.js";
import { rankMembers } from "../../../src/cluster/rendezvous.js";

const MEMBERS = ["10.0.0.1:3129", "10.0.0.2:3129", "10.0.0.3:3129"];
const DIGEST = `sha256:${"ab".repeat(32)}`;
const REQUEST = { kind: "blob" as const, host: "quay.test", port: 443, name: "team/app", digest: DIGEST };

/** A cluster seen from `self`, whose peer client only records the replication requests it is asked to send. */
function clusterAs(self: string): { cluster: Cluster; sent: { to: string; from: string }[] } {
  const sent: { to: string; from: string }[] = [];
  const membership = { self, live: () => MEMBERS.filter((m) => m !== self), reportFailure: () => undefined } as unknown as Membership;
  const client = { replicate: async (to: string, _req: unknown, from: string) => void sent.push({ to, from }) } as unknown as PeerClient;
  return { cluster: new Cluster(membership, client, createLogger("silent")), sent };
}

describe("Cluster.replicate", () => {
  const ranking = rankMembers(DIGEST, MEMBERS);

  it("after this replica's own fill, asks the next in the ranking after it to copy from it", () => {
    const { cluster, sent } = clusterAs(ranking[0]!);
    cluster.replicate(REQUEST);
    expect(sent).toEqual([{ to: ranking[1], from: ranking[0] }]);
  });

  it("for a holder it names, asks the first other than that holder, which may be this replica itself", () => {
    const { cluster, sent } = clusterAs(ranking[1]!);
    cluster.replicate(REQUEST, ranking[0]!);
    expect(sent).toEqual([{ to: ranking[1], from: ranking[0] }]);
  });
});

describe("Cluster: tag answers", () => {
  const TAG = { host: "quay.test", port: 443, name: "team/app", tag: "v1", acceptSet: ["application/vnd.oci.image.index.v1+json"] };
  const FIVE = ["10.0.0.1:3129", "10.0.0.2:3129", "10.0.0.3:3129", "10.0.0.4:3129", "10.0.0.5:3129"];
  const ranking = rankMembers(tagRankKey(TAG.host, TAG.name, TAG.tag), FIVE);
  const answer = (digest: string, recorded: number): PeerTagAnswer => ({ digest: `sha256:${digest.repeat(64)}`, mediaType: "m", size: 1, recorded });

  /** A cluster of five seen from `self`, whose peers answer tag lookups from `held`; records who was asked and what was sent. */
  function fiveAs(self: string, held: Record<string, PeerTagAnswer>) {
    const asked: string[] = [];
    const pushed: { to: string; from: string; answer: ReplicatedTag }[] = [];
    const membership = { self, live: () => FIVE.filter((m) => m !== self), reportFailure: () => undefined } as unknown as Membership;
    const client = {
      tag: async (peer: string) => {
        asked.push(peer);
        return held[peer];
      },
      pushTag: async (to: string, sent: ReplicatedTag, from: string) => void pushed.push({ to, from, answer: sent }),
    } as unknown as PeerClient;
    return { cluster: new Cluster(membership, client, createLogger("silent")), asked, pushed };
  }

  it("a recorded answer goes to the first of the tag's ranking other than the recorder, once while it stays the same", () => {
    for (const self of [ranking[0]!, ranking[3]!]) {
      const { cluster, pushed } = fiveAs(self, {});
      const sent = { ...TAG, entry: answer("a", 1) };
      cluster.replicateTag(sent);
      cluster.replicateTag({ ...sent, entry: answer("a", 2) });
      expect(pushed.map((p) => [p.to, p.from])).toEqual([[self === ranking[0] ? ranking[1] : ranking[0], self]]);
      // A new digest (the tag moved) is sent at once.
      cluster.replicateTag({ ...sent, entry: answer("b", 3) });
      expect(pushed.map((p) => p.answer.entry.digest)).toEqual([answer("a", 1).digest, answer("b", 3).digest]);
      expect(cluster.stats.tagReplications).toBe(2);
    }
  });

  it("a lookup asks the ranking's first two; the newest of their answers wins", async () => {
    const { cluster, asked } = fiveAs(ranking[4]!, { [ranking[0]!]: answer("a", 10), [ranking[1]!]: answer("b", 20), [ranking[2]!]: answer("c", 30) });
    expect(await cluster.tagFromPeers(TAG)).toEqual(answer("b", 20));
    expect(asked.sort()).toEqual([ranking[0], ranking[1]].sort());
  });

  it("when neither of the first two has an answer, every other live peer is asked; an answer dated far ahead is not taken", async () => {
    const ahead = answer("d", Date.now() + 3_600_000);
    const { cluster, asked } = fiveAs(ranking[0]!, { [ranking[2]!]: answer("c", 30), [ranking[3]!]: ahead });
    expect(await cluster.tagFromPeers(TAG)).toEqual(answer("c", 30));
    // This replica is first in the ranking: the second is asked, then the rest.
    expect(asked.slice(0, 1)).toEqual([ranking[1]]);
    expect(asked.slice(1).sort()).toEqual([ranking[2], ranking[3], ranking[4]].sort());
  });
});
