import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { CacheIndex, type TagEntry } from "../../../src/cache/cache-index.js";
import { RecordedTags } from "../../../src/cache/recorded-tags.js";
import { createLogger } from "../../../src/log/logger.js";

const DAY = 24 * 60 * 60_000;
const CACHED = `sha256:${"a".repeat(64)}`;
const NOT_CACHED = `sha256:${"b".repeat(64)}`;

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** An index in a fresh directory, removed after the test. */
async function freshIndex(): Promise<CacheIndex> {
  const dir = mkdtempSync(path.join(tmpdir(), "regcache-tags-"));
  dirs.push(dir);
  return CacheIndex.open(path.join(dir, "index.sqlite"), createLogger("silent"));
}

describe("RecordedTags.pruneUncached", () => {
  it("drops answers whose manifest is not cached once they are a week old, and keeps every other", async () => {
    const index = await freshIndex();
    await index.putBlob({ digest: CACHED, size: 1, kind: "manifest", mediaType: "m", created: 0, lastAccess: 0, hits: 0, links: [] });
    const tags = new RecordedTags(index);
    const now = 100 * DAY;
    const answer = (digest: string, age: number): TagEntry => ({ digest, mediaType: "m", size: 1, recorded: now - age });
    const image = (tag: string) => ({ host: "quay.test", name: "team/app", tag });
    await tags.record(image("cached-old"), ["a"], answer(CACHED, 60 * DAY));
    await tags.record(image("uncached-recent"), ["a"], answer(NOT_CACHED, 6 * DAY));
    await tags.record(image("uncached-old"), ["a"], answer(NOT_CACHED, 8 * DAY));
    // Each answer is kept for its Accept set and as the latest: two rows.
    expect(await tags.pruneUncached(now)).toBe(2);
    expect(await tags.forAccept(image("cached-old"), ["a"])).toBeDefined();
    expect(await tags.forAccept(image("uncached-recent"), ["a"])).toBeDefined();
    expect(await tags.forAccept(image("uncached-old"), ["a"])).toBeUndefined();
    expect(await tags.latest(image("uncached-old"))).toBeUndefined();
    await index.close();
  });
});

describe("RecordedTags.keepNewer: another replica's answer (its second copy)", () => {
  it("is kept for its Accept set and as the latest, each only where it is newer than what is held", async () => {
    const index = await freshIndex();
    const tags = new RecordedTags(index);
    const image = { host: "quay.test", name: "team/app", tag: "v1" };
    const answer = (digest: string, recorded: number): TagEntry => ({ digest, mediaType: "m", size: 1, recorded });
    await tags.keepNewer(image, ["a"], answer(CACHED, 10));
    expect(await tags.forAccept(image, ["a"])).toEqual(answer(CACHED, 10));
    expect(await tags.latest(image)).toEqual(answer(CACHED, 10));
    // This replica recorded a newer answer for another Accept set: the latest stays, the older copy fills only its own Accept set.
    await tags.record(image, ["b"], answer(NOT_CACHED, 30));
    await tags.keepNewer(image, ["c"], answer(CACHED, 20));
    expect(await tags.forAccept(image, ["c"])).toEqual(answer(CACHED, 20));
    expect(await tags.latest(image)).toEqual(answer(NOT_CACHED, 30));
    // An older copy of an Accept set held here changes nothing.
    await tags.keepNewer(image, ["a"], answer(NOT_CACHED, 5));
    expect(await tags.forAccept(image, ["a"])).toEqual(answer(CACHED, 10));
    await index.close();
  });
});
