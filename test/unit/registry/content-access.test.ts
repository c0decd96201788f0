import type { IncomingMessage, ServerResponse } from "node:http";
import { describe, expect, it } from "vitest";
import type { SharedTier } from "../../../src/fleet/shared-tier.js";
import { parseDigest } from "../../../src/oci/digest.js";
import type { AccessControl, AccessDecision } from "../../../src/registry/access-control.js";
import { ContentClearance } from "../../../src/registry/content-access.js";
import type { ContentTarget } from "../../../src/registry/content-target.js";
import type { RegistryRequest } from "../../../src/registry/request-context.js";

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const target: ContentTarget = { kind: "manifest", name: "team/app", digest: parseDigest(`sha256:${"a".repeat(64)}`)! };
const rr = { req: { headers: {} } as IncomingMessage, res: {} as ServerResponse, host: "quay.test", port: 443, log: { host: "quay.test", method: "GET", path: "/v2/team/app/manifests/x" } } as RegistryRequest;

/** A clearance over fakes that record which question upstream was asked and what got linked. */
function clearance(linked: boolean, confirmed: AccessDecision) {
  const asked: string[] = [];
  const links: unknown[][] = [];
  const access = {
    async authorize() {
      asked.push("authorize");
      return { allowed: true, result: "confirmed" } satisfies AccessDecision;
    },
    async confirmInRepository() {
      asked.push("confirm");
      return confirmed;
    },
  } as unknown as AccessControl;
  const store = { isLinked: () => linked, link: (...args: unknown[]) => links.push(["local", ...args]) };
  const shared = { link: (...args: unknown[]) => links.push(["shared", ...args]) } as unknown as SharedTier;
  return { asked, links, clearance: new ContentClearance(access, store, shared, false) };
}

describe("ContentClearance: a manifest held here whose type in the repository is not known", () => {
  it("is confirmed with upstream even where it is linked, and the type upstream gives there is kept on both tiers", async () => {
    const { asked, links, clearance: c } = clearance(true, { allowed: true, result: "confirmed", contentType: OCI_MANIFEST });
    const access = await c.decide(rr, target, { local: true, learnType: true });
    expect(access.kind === "cached" && access.decision.allowed).toBe(true);
    expect(asked).toEqual(["confirm"]);
    expect(links).toEqual([
      ["local", target.digest, "quay.test/team/app", OCI_MANIFEST],
      ["shared", target.digest, "quay.test/team/app", OCI_MANIFEST],
    ]);
  });

  it("linked, of a known type: authorized as any content of the repository, nothing linked again", async () => {
    const { asked, links, clearance: c } = clearance(true, { allowed: true, result: "confirmed" });
    await c.decide(rr, target, { local: true });
    expect(asked).toEqual(["authorize"]);
    expect(links).toEqual([]);
  });

  it("a denial links nothing", async () => {
    const { links, clearance: c } = clearance(true, { allowed: false, result: "denied" });
    const access = await c.decide(rr, target, { local: true, learnType: true });
    expect(access.kind === "cached" && access.decision.allowed).toBe(false);
    expect(links).toEqual([]);
  });
});
