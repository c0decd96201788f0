import type { IncomingMessage, ServerResponse } from "node:http";
import { describe, expect, it } from "vitest";
import type { CacheIndex } from "../../../src/cache/cache-index.js";
import { createLogger } from "../../../src/log/logger.js";
import { AccessControl } from "../../../src/registry/access-control.js";
import type { RegistryRequest } from "../../../src/registry/request-context.js";
import type { UpstreamClient } from "../../../src/upstream/client.js";

describe("AccessControl's memory of verdicts", () => {
  it("holds the 10 000 most recently used repositories; an older one is read from the index again", async () => {
    const reads = new Map<string, number>();
    const index = {
      async getMeta(key: string) {
        reads.set(key, (reads.get(key) ?? 0) + 1);
        return key.startsWith("public:") ? { isPublic: true, checkedAt: Date.now() } : undefined;
      },
      async putMeta() {},
    } as unknown as CacheIndex;
    const access = new AccessControl({} as UpstreamClient, index, Buffer.alloc(32), { offlineAccess: "public", publicTtl: 3_600_000, authTtl: 60_000, offlineGrace: 86_400_000 }, createLogger("silent"));
    const rr = { req: { headers: {} } as IncomingMessage, res: {} as ServerResponse, host: "quay.test", port: 443, log: { host: "quay.test", method: "GET", path: "/" } } as RegistryRequest;
    const authorize = async (name: string) => (await access.authorizeOffline(rr, name)).result;
    expect(await authorize("r0")).toBe("offline-allowed");
    expect(await authorize("r0")).toBe("offline-allowed");
    expect(reads.get("public:quay.test/r0")).toBe(1);
    for (let i = 1; i <= 10_000; i++) await authorize(`r${i}`);
    expect(await authorize("r10000")).toBe("offline-allowed");
    expect(reads.get("public:quay.test/r10000")).toBe(1);
    expect(await authorize("r0")).toBe("offline-allowed");
    expect(reads.get("public:quay.test/r0")).toBe(2);
  });
});

describe("AccessControl.pruneConfirmations", () => {
  it("drops persisted confirmations older than both --auth-ttl and --offline-grace, and nothing else", async () => {
    const rows = new Map<string, unknown>([
      ["auth:k:quay.test/old", 1_000],
      ["auth:k:quay.test/within-grace", 50_000],
      ["public:quay.test/old", { isPublic: true, checkedAt: 1_000 }],
      ["challenge:quay.test", 'Bearer realm="https://auth.test/token"'],
    ]);
    const index = {
      async pruneMeta(keep: (key: string, value: unknown) => boolean) {
        const gone = [...rows].filter(([key, value]) => !keep(key, value)).map(([key]) => key);
        for (const key of gone) rows.delete(key);
        return gone.length;
      },
    } as unknown as CacheIndex;
    const access = new AccessControl({} as UpstreamClient, index, Buffer.alloc(32), { offlineAccess: "public", publicTtl: 3_600_000, authTtl: 10_000, offlineGrace: 40_000 }, createLogger("silent"));
    expect(await access.pruneConfirmations(60_000)).toBe(1);
    expect([...rows.keys()]).toEqual(["auth:k:quay.test/within-grace", "public:quay.test/old", "challenge:quay.test"]);
  });
});

describe("AccessControl.offlineRule: a peer's copy while upstream cannot answer", () => {
  const rows = new Map<string, unknown>();
  const index = {
    async getMeta(key: string) {
      return rows.get(key);
    },
    async putMeta() {},
  } as unknown as CacheIndex;
  const access = new AccessControl({} as UpstreamClient, index, Buffer.alloc(32), { offlineAccess: "public", publicTtl: 3_600_000, authTtl: 60_000, offlineGrace: 86_400_000 }, createLogger("silent"));
  const request = (name: string): RegistryRequest => ({ req: { headers: {} } as IncomingMessage, res: {} as ServerResponse, host: "quay.test", port: 443, log: { host: "quay.test", method: "GET", path: `/v2/${name}/blobs/x` } }) as RegistryRequest;

  it("under --offline-access public: allowed when the peer found the repository public, refused with a 401 when nobody did", async () => {
    const vouched = request("team/vouched");
    expect((await access.offlineRule(vouched, "team/vouched").judge(Date.now() - 1_000)).allowed).toBe(true);
    expect(vouched.log.access).toBe("offline-allowed");
    const unknown = request("team/unknown");
    const refused = await access.offlineRule(unknown, "team/unknown").judge(undefined);
    expect(refused.allowed).toBe(false);
    expect(refused.allowed === false && "refusal" in refused && refused.refusal.status).toBe(401);
    expect(unknown.log.access).toBe("offline-denied");
  });

  it("a newer verdict of this replica's that the repository is private outranks a peer's older finding", async () => {
    rows.set("public:quay.test/team/private", { isPublic: false, checkedAt: Date.now() });
    const rr = request("team/private");
    expect((await access.offlineRule(rr, "team/private").judge(Date.now() - 60_000)).allowed).toBe(false);
  });
});
