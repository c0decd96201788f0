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

async function emptyIndex(): Promise<CacheIndex> {
  const dir = mkdtempSync(path.join(tmpdir(), "regcache-tags-"));
  dirs.push(dir);
  return CacheIndex.open(path.join(dir, "index.sqlite"), createLogger("silent"));
}

describe("RecordedTags.pruneUncached", () => {
  it("drops answers whose manifest is not cached once they are a week old, and keeps every other", async () => {
    const index = await emptyIndex();
    await index.putBlob({ digest: CACHED, size: 1, mediaType: "m", created: 0, lastAccess: 0, hits: 0, links: [] });
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

describe("RecordedTags.record", () => {
  it("writes an answer the same as the last one again only once a second has passed; a changed answer at once", async () => {
    const index = await emptyIndex();
    const writes: string[] = [];
    const putTag = index.putTag.bind(index);
    index.putTag = (key, entry) => (writes.push(key), putTag(key, entry));
    const tags = new RecordedTags(index);
    const image = { host: "quay.test", name: "team/app", tag: "v1" };
    const answer = (digest: string, recorded: number): TagEntry => ({ digest, mediaType: "m", size: 1, recorded });
    await tags.record(image, ["a"], answer(CACHED, 10_000));
    await tags.record(image, ["a"], answer(CACHED, 10_500));
    expect(writes).toHaveLength(2);
    await tags.record(image, ["a"], answer(NOT_CACHED, 10_600));
    expect(writes).toHaveLength(4);
    await tags.record(image, ["a"], answer(NOT_CACHED, 11_599));
    expect(writes).toHaveLength(4);
    await tags.record(image, ["a"], answer(NOT_CACHED, 11_600));
    expect(writes).toHaveLength(6);
    expect((await tags.forAccept(image, ["a"]))?.recorded).toBe(11_600);
    expect((await tags.latest(image))?.digest).toBe(NOT_CACHED);
    await index.close();
  });
});
