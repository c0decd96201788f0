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
const IMAGE = { host: "quay.test", name: "team/app", tag: "v1" };

function answer(digest: string, recorded: number): TagEntry {
  return { digest, mediaType: "m", size: 1, recorded };
}

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
    const image = (tag: string) => ({ host: "quay.test", name: "team/app", tag });
    await tags.record(image("cached-old"), ["a"], answer(CACHED, now - 60 * DAY));
    await tags.record(image("uncached-recent"), ["a"], answer(NOT_CACHED, now - 6 * DAY));
    await tags.record(image("uncached-old"), ["a"], answer(NOT_CACHED, now - 8 * DAY));
    // Each answer is kept for its Accept set and as the latest: two rows.
    expect(await tags.pruneUncached(now)).toBe(2);
    expect(await tags.forAccept(image("cached-old"), ["a"])).toBeDefined();
    expect(await tags.forAccept(image("uncached-recent"), ["a"])).toBeDefined();
    expect(await tags.forAccept(image("uncached-old"), ["a"])).toBeUndefined();
    expect(await tags.latest(image("uncached-old"))).toBeUndefined();
    await index.close();
  });
});

describe("RecordedTags.record", () => {
  it("writes an answer the same as the last one again only once a second has passed; a changed answer at once", async () => {
    const index = await freshIndex();
    const writes: string[] = [];
    const putTag = index.putTag.bind(index);
    index.putTag = (key, entry) => (writes.push(key), putTag(key, entry));
    const tags = new RecordedTags(index);
    await tags.record(IMAGE, ["a"], answer(CACHED, 10_000));
    await tags.record(IMAGE, ["a"], answer(CACHED, 10_500));
    expect(writes).toHaveLength(2);
    await tags.record(IMAGE, ["a"], answer(NOT_CACHED, 10_600));
    expect(writes).toHaveLength(4);
    await tags.record(IMAGE, ["a"], answer(NOT_CACHED, 11_599));
    expect(writes).toHaveLength(4);
    await tags.record(IMAGE, ["a"], answer(NOT_CACHED, 11_600));
    expect(writes).toHaveLength(6);
    expect((await tags.forAccept(IMAGE, ["a"]))?.recorded).toBe(11_600);
    expect((await tags.latest(IMAGE))?.digest).toBe(NOT_CACHED);
    await index.close();
  });

  it("writes the same answer again at once after another replica's answer replaced it", async () => {
    const index = await freshIndex();
    const tags = new RecordedTags(index);
    await tags.record(IMAGE, ["a"], answer(CACHED, 10_000));
    await tags.keepNewer(IMAGE, ["a"], answer(NOT_CACHED, 10_100));
    expect(await tags.forAccept(IMAGE, ["a"])).toEqual(answer(NOT_CACHED, 10_100));
    await tags.record(IMAGE, ["a"], answer(CACHED, 10_200));
    expect(await tags.forAccept(IMAGE, ["a"])).toEqual(answer(CACHED, 10_200));
    expect(await tags.latest(IMAGE)).toEqual(answer(CACHED, 10_200));
    await index.close();
  });
});

describe("RecordedTags.keepNewer: another replica's answer (its second copy)", () => {
  it("is kept for its Accept set and as the latest, each only where it is newer than what is held", async () => {
    const index = await freshIndex();
    const tags = new RecordedTags(index);
    await tags.keepNewer(IMAGE, ["a"], answer(CACHED, 10));
    expect(await tags.forAccept(IMAGE, ["a"])).toEqual(answer(CACHED, 10));
    expect(await tags.latest(IMAGE)).toEqual(answer(CACHED, 10));
    // This replica recorded a newer answer for another Accept set: the latest stays, the older copy fills only its own Accept set.
    await tags.record(IMAGE, ["b"], answer(NOT_CACHED, 30));
    await tags.keepNewer(IMAGE, ["c"], answer(CACHED, 20));
    expect(await tags.forAccept(IMAGE, ["c"])).toEqual(answer(CACHED, 20));
    expect(await tags.latest(IMAGE)).toEqual(answer(NOT_CACHED, 30));
    // An older copy of an Accept set held here changes nothing.
    await tags.keepNewer(IMAGE, ["a"], answer(NOT_CACHED, 5));
    expect(await tags.forAccept(IMAGE, ["a"])).toEqual(answer(CACHED, 10));
    await index.close();
  });
});
