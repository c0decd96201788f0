import { describe, expect, it } from "vitest";
import { Cluster } from "../../../src/cluster/cluster.js";
import type { Membership } from "../../../src/cluster/membership.js";
import type { PeerClient } from "../../../src/cluster/peer-client.js";
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
