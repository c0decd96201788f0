import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import KeyvSqlite from "@keyv/sqlite";
import Keyv from "keyv";
import { afterEach, describe, expect, it } from "vitest";
import { CacheIndex, type BlobEntry } from "../../../src/cache/cache-index.js";

const DIGEST = `sha256:${"a".repeat(64)}`;
const row = (links: string[]): BlobEntry => ({ digest: DIGEST, size: 10, mediaType: "application/octet-stream", created: 1, lastAccess: 1, hits: 0, links });

describe("CacheIndex repository links", () => {
  const dirs: string[] = [];
  const fresh = (): string => {
    const dir = mkdtempSync(path.join(tmpdir(), "regcache-index-"));
    dirs.push(dir);
    return path.join(dir, "index.sqlite");
  };
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it("persist with the blob row across a restart, and go with it", async () => {
    const file = fresh();
    const index = await CacheIndex.open(file);
    await index.putBlob(row(["quay.test/team/app"]));
    index.link(DIGEST, "open.test/lib/app");
    await index.close();
    const reopened = await CacheIndex.open(file);
    expect(reopened.getBlob(DIGEST)?.links).toEqual(["quay.test/team/app", "open.test/lib/app"]);
    await reopened.deleteBlob(DIGEST);
    await reopened.close();
    const third = await CacheIndex.open(file);
    expect(third.getBlob(DIGEST)).toBeUndefined();
    await third.close();
  });

  it("are not invented for a digest that is not cached", async () => {
    const index = await CacheIndex.open(fresh());
    index.link(DIGEST, "quay.test/team/app");
    expect(index.getBlob(DIGEST)).toBeUndefined();
    await index.close();
  });

  it("start empty for rows written before links existed: their repositories were never confirmed", async () => {
    const file = fresh();
    const store = new KeyvSqlite({ uri: `sqlite://${file}`, table: "regcache" });
    const legacy = new Keyv({ store, namespace: "regcache" });
    const { links: _links, ...old } = row([]);
    await legacy.set(`blob:${DIGEST}`, { ...old, seenIn: ["quay.test/public/app", "quay.test/corp/secret"] });
    await legacy.disconnect();
    const index = await CacheIndex.open(file);
    expect(index.getBlob(DIGEST)?.links).toEqual([]);
    expect(index.getBlob(DIGEST)).not.toHaveProperty("seenIn");
    await index.close();
  });
});
