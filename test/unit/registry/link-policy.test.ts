import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { addLink } from "../../../src/cache/cache-index.js";
import type { OfflineAccess } from "../../../src/config/config.js";
import { offlineAllows, onlineStep, type AccessFacts } from "../../../src/registry/access-policy.js";
import { cachedContentStep, classifyConfirmation } from "../../../src/registry/link-policy.js";

describe("classifyConfirmation", () => {
  it.each([
    [200, "linked"],
    [204, "linked"],
    [307, "linked"],
    [401, "refused"],
    [403, "refused"],
    [404, "refused"],
    [400, "refused"],
    [429, "unavailable"],
    [500, "unavailable"],
    [503, "unavailable"],
    ["unreachable", "unavailable"],
  ] as const)("%s means %s", (status, verdict) => {
    expect(classifyConfirmation(status)).toBe(verdict);
  });
});

describe("addLink", () => {
  it("keeps each link once, most recent last, and at most 256", () => {
    const links: string[] = [];
    expect(addLink(links, "quay.test/a")).toBe(true);
    expect(addLink(links, "quay.test/a")).toBe(false);
    for (let i = 0; i < 300; i++) addLink(links, `quay.test/r${i}`);
    expect(links).toHaveLength(256);
    expect(links.at(-1)).toBe("quay.test/r299");
    expect(links).not.toContain("quay.test/a");
  });
});

/**
 * A model of the world: upstream's truth (which repositories hold the digest, which clients
 * may read which repositories) and outages. regcache's rules, composed as ContentHandler
 * composes them, must never serve cached bytes that upstream would refuse to that client.
 */
const REPOS = ["quay.test/public", "quay.test/private", "quay.test/other", "open.test/lib"];
const CLIENTS = ["anonymous", "alice", "mallory"];
const TIMINGS = { publicTtl: 1_000, authTtl: 500, offlineGrace: 10_000 };

interface World {
  holds: Set<string>;
  readable: (client: string, repo: string) => boolean;
}

type Event =
  | { kind: "fill"; client: string; repo: string }
  | { kind: "read"; client: string; repo: string; outage: boolean; policy: OfflineAccess; advance: number };

const event: fc.Arbitrary<Event> = fc.oneof(
  fc.record({ kind: fc.constant("fill" as const), client: fc.constantFrom(...CLIENTS), repo: fc.constantFrom(...REPOS) }),
  fc.record({
    kind: fc.constant("read" as const),
    client: fc.constantFrom(...CLIENTS),
    repo: fc.constantFrom(...REPOS),
    outage: fc.boolean(),
    policy: fc.constantFrom<OfflineAccess>("public", "all", "none"),
    advance: fc.integer({ min: 0, max: 2_000 }),
  }),
);

const world: fc.Arbitrary<World> = fc
  .record({ holds: fc.subarray(REPOS), publicRepos: fc.subarray(REPOS), grants: fc.subarray(REPOS) })
  .map(({ holds, publicRepos, grants }) => ({
    holds: new Set(holds),
    // alice may read what is public and what she is granted; mallory and anonymous only what is public.
    readable: (client: string, repo: string) => publicRepos.includes(repo) || (client === "alice" && grants.includes(repo)),
  }));

/** Upstream's answer to a HEAD or GET of the digest in `repo` for `client`. */
function upstreamStatus(w: World, client: string, repo: string): number {
  if (!w.readable(client, repo)) return client === "anonymous" ? 401 : 403;
  return w.holds.has(repo) ? 200 : 404;
}

describe("serving cached content: properties over any sequence of fills, reads and outages", () => {
  it("online, cached bytes reach a client only where upstream would give them to that client", () => {
    fc.assert(
      fc.property(world, fc.array(event, { maxLength: 40 }), (w, events) => {
        const links: string[] = [];
        const confirmedAt = new Map<string, number>();
        const verdicts = new Map<string, { isPublic: boolean; checkedAt: number }>();
        let now = 0;
        for (const e of events) {
          if (e.kind === "fill") {
            // A fill caches and links only on upstream's 200 to that client.
            if (upstreamStatus(w, e.client, e.repo) === 200) {
              addLink(links, e.repo);
              confirmedAt.set(`${e.client}:${e.repo}`, now);
            }
            continue;
          }
          now += e.advance;
          // Nothing is cached until a fill succeeded.
          if (links.length === 0) continue;
          const status = e.outage ? "unreachable" : upstreamStatus(w, e.client, e.repo);
          let served: boolean;
          if (cachedContentStep(links.includes(e.repo)) === "confirm") {
            served = classifyConfirmation(status) === "linked";
            if (served) addLink(links, e.repo);
          } else {
            const facts: AccessFacts = { now, publicVerdict: verdicts.get(e.repo), confirmedAt: confirmedAt.get(`${e.client}:${e.repo}`) };
            const step = onlineStep(facts, TIMINGS);
            if (e.outage) served = step === "allow" || offlineAllows(facts, e.policy, TIMINGS);
            else if (step === "allow") served = true;
            else {
              if (step === "probe-public") verdicts.set(e.repo, { isPublic: w.readable("anonymous", e.repo), checkedAt: now });
              served = verdicts.get(e.repo)!.isPublic || status === 200;
              if (status === 200) confirmedAt.set(`${e.client}:${e.repo}`, now);
            }
          }
          if (!served) continue;
          // Whatever happens, a served pair is one upstream confirmed holds the digest...
          expect(w.holds.has(e.repo), `served ${e.repo} which does not hold it`).toBe(true);
          // ...and online, to a client upstream lets read it (upstream's truth is fixed in this model).
          if (!e.outage) expect(w.readable(e.client, e.repo), `served ${e.repo} to ${e.client}`).toBe(true);
          // Offline, only where policy allows: "all", or a client or repository vouched for earlier.
          if (e.outage && e.policy !== "all") {
            const vouched = verdicts.get(e.repo)?.isPublic === true || confirmedAt.has(`${e.client}:${e.repo}`);
            expect(vouched, `offline ${e.policy}: ${e.client} in ${e.repo}`).toBe(true);
          }
        }
      }),
      { numRuns: 2_000 },
    );
  });

  it("an unlinked pair is never served while upstream cannot confirm it, whatever the offline policy", () => {
    fc.assert(
      fc.property(fc.constantFrom<number | "unreachable">("unreachable", 500, 502, 503, 429), (status) => {
        expect(cachedContentStep(false)).toBe("confirm");
        expect(classifyConfirmation(status)).toBe("unavailable");
      }),
    );
  });
});
