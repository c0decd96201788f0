import { describe, expect, it } from "vitest";
import { TagRevalidations, type RevalidationScope } from "../../../src/registry/tag-revalidations.js";

const scope = (over: Partial<RevalidationScope> = {}): RevalidationScope => ({
  host: "quay.test",
  port: 443,
  name: "team/app",
  tag: "v1",
  acceptSet: ["application/vnd.oci.image.index.v1+json"],
  credentialScope: "anonymous",
  ...over,
});

/** An ask that stays in flight until `settle` is called; counts how often it was started. */
function gatedAsk<T>() {
  let started = 0;
  const settlers: ((value: T) => void)[] = [];
  const ask = () => {
    started += 1;
    return new Promise<T>((resolve) => settlers.push(resolve));
  };
  return { ask, started: () => started, settle: (value: T) => settlers.shift()!(value) };
}

describe("TagRevalidations", () => {
  it("requests of one scope arriving while it is asked share the one answer", async () => {
    const revalidations = new TagRevalidations<string>();
    const gate = gatedAsk<string>();
    const first = revalidations.share(scope(), gate.ask);
    const second = revalidations.share(scope(), gate.ask);
    const third = revalidations.share(scope({ acceptSet: ["application/vnd.oci.image.index.v1+json"] }), gate.ask);
    expect([first.joined, second.joined, third.joined]).toEqual([false, true, true]);
    expect(gate.started()).toBe(1);
    gate.settle("sha256:aaa");
    expect(await Promise.all([first.answer, second.answer, third.answer])).toEqual(["sha256:aaa", "sha256:aaa", "sha256:aaa"]);
  });

  it("never shares across credentials, Accept sets, tags, repositories or registries", async () => {
    const revalidations = new TagRevalidations<string>();
    const gate = gatedAsk<string>();
    const others = [
      scope({ credentialScope: "0123456789abcdef0123456789abcdef" }),
      scope({ acceptSet: ["application/vnd.docker.distribution.manifest.v2+json"] }),
      scope({ tag: "v2" }),
      scope({ name: "team/other" }),
      scope({ host: "ghcr.test" }),
      scope({ port: 5000 }),
    ];
    const shared = [scope(), ...others].map((s) => revalidations.share(s, gate.ask));
    expect(shared.map((s) => s.joined)).toEqual(shared.map(() => false));
    expect(gate.started()).toBe(7);
  });

  it("keeps nothing once answered: the next request asks again, also after a failure", async () => {
    const revalidations = new TagRevalidations<string>();
    let asked = 0;
    const failing = revalidations.share(scope(), async () => {
      asked += 1;
      throw new Error("upstream fault");
    });
    const joiner = revalidations.share(scope(), async () => "never");
    await expect(failing.answer).rejects.toThrow("upstream fault");
    await expect(joiner.answer).rejects.toThrow("upstream fault");
    const next = revalidations.share(scope(), async () => {
      asked += 1;
      return "sha256:bbb";
    });
    expect(next.joined).toBe(false);
    expect(await next.answer).toBe("sha256:bbb");
    expect(asked).toBe(2);
  });
});
