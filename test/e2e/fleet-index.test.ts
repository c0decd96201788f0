import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RegcacheError } from "../../src/errors.js";
import type { FleetBlob, FleetIndex } from "../../src/fleet/fleet-index.js";
import { RedisFleetIndex } from "../../src/fleet/redis-fleet-index.js";
import { createLogger } from "../../src/log/logger.js";
import { freePort, waitFor } from "./harness/ports.js";
import { TestRedis } from "./harness/redis.js";
import { missingTools } from "./harness/tools.js";

const exec = promisify(execFile);
const missing = missingTools("redis-server", "redis-cli");

const PASSWORD = "Pa55-w0rd-never-logged";
/** The interface says about a second; this bound only proves nothing hangs on a loaded machine. */
const PROMPT_MS = 5_000;
const OPEN_BOUND_MS = 10_000;

const logLines: string[] = [];
const logger = createLogger("debug", { write: (line: string) => void logLines.push(line) });

function blob(digest: string, size: number, links: string[] = []): FleetBlob {
  return { digest, size, mediaType: "application/octet-stream", links, storedAt: Date.now() };
}

const digest = (name: string): string => `sha256:${name.padEnd(64, "0")}`;

/** Expects `call` to reject with SHARED_STORE within `withinMs`, with no password in the message; returns the message. */
async function rejectsPromptly(call: () => Promise<unknown>, withinMs = PROMPT_MS): Promise<string> {
  const started = Date.now();
  const error = await call().then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(Date.now() - started).toBeLessThan(withinMs);
  expect(error).toBeInstanceOf(RegcacheError);
  expect((error as RegcacheError).code).toBe("SHARED_STORE");
  expect((error as RegcacheError).message).not.toContain(PASSWORD);
  return (error as RegcacheError).message;
}

/** Every method but touch, each on its own digest or key so none depends on another's result. */
function everyCall(index: FleetIndex): (() => Promise<unknown>)[] {
  return [
    () => index.getBlob(digest("e1")),
    () => index.putBlob(blob(digest("e2"), 1)),
    () => index.link(digest("e3"), "registry.example/app"),
    () => index.deleteBlob(digest("e4")),
    () => index.leastRecentlyUsed(10),
    () => index.storedBytes(),
    () => index.withoutRows([digest("e10")]),
    () => index.getRecord("meta:test:e5"),
    () => index.putRecord("meta:test:e6", { n: 1 }),
    () => index.acquireLease("e7", "replica", 10_000),
    () => index.renewLease("e8", "token", 10_000),
    () => index.releaseLease("e9", "token"),
  ];
}

describe.skipIf(missing.length > 0)("RedisFleetIndex against a real redis-server", () => {
  const redis = new TestRedis(PASSWORD);
  let a: RedisFleetIndex;
  let b: RedisFleetIndex;

  const cli = async (...args: string[]): Promise<string> =>
    (await exec("redis-cli", ["-p", String(redis.port), "-a", PASSWORD, "--no-auth-warning", ...args], { timeout: 10_000 })).stdout.trim();

  beforeAll(async () => {
    await redis.start();
    // Two replicas sharing one index.
    a = await RedisFleetIndex.open(redis.url, logger);
    b = await RedisFleetIndex.open(`${redis.url}/0`, logger);
  });

  afterAll(async () => {
    await a?.close();
    await b?.close();
    await redis.kill();
  });

  it("round-trips blob rows between replicas, under regcache:blob:<digest>", async () => {
    const entry = blob(digest("a1"), 1234, ["registry.example/app"]);
    await a.putBlob(entry);
    expect(await b.getBlob(entry.digest)).toEqual(entry);
    expect(await b.getBlob(digest("absent"))).toBeUndefined();
    expect(await cli("EXISTS", `regcache:blob:${entry.digest}`)).toBe("1");
    await b.deleteBlob(entry.digest);
    expect(await a.getBlob(entry.digest)).toBeUndefined();
  });

  it("round-trips tag and meta records under regcache:tag:... and regcache:meta:...", async () => {
    const tag = { digest: digest("t1"), mediaType: "application/vnd.oci.image.index.v1+json", size: 99, recorded: 5 };
    await a.putRecord("tag:registry.example/app:latest@abc", tag);
    await a.putRecord("meta:verdict:registry.example/app", { allowed: true });
    expect(await b.getRecord("tag:registry.example/app:latest@abc")).toEqual(tag);
    expect(await b.getRecord("meta:verdict:registry.example/app")).toEqual({ allowed: true });
    expect(await b.getRecord("tag:nothing")).toBeUndefined();
    expect(await cli("EXISTS", "regcache:tag:registry.example/app:latest@abc", "regcache:meta:verdict:registry.example/app")).toBe("2");
  });

  it("links dedupe, keep the most recent 256, and need a row", async () => {
    const d = digest("l1");
    await a.putBlob(blob(d, 10));
    await a.link(d, "registry.example/one");
    await b.link(d, "registry.example/one");
    expect((await a.getBlob(d))?.links).toEqual(["registry.example/one"]);
    for (let i = 0; i < 300; i++) await a.link(d, `registry.example/r${i}`);
    const links = (await b.getBlob(d))?.links ?? [];
    expect(links).toHaveLength(256);
    expect(links[0]).toBe("registry.example/r44");
    expect(links[255]).toBe("registry.example/r299");

    await a.link(digest("no-row"), "registry.example/one");
    expect(await a.getBlob(digest("no-row"))).toBeUndefined();
  });

  it("gives a lease to exactly one of two racing replicas; the other sees the holder", async () => {
    const [ra, rb] = await Promise.all([a.acquireLease("gc", "replica-a", 10_000), b.acquireLease("gc", "replica-b", 10_000)]);
    const winners = [ra, rb].filter((r) => r.held);
    expect(winners).toHaveLength(1);
    const [winner, loser, winnerName, loserIndex] = ra.held ? [a, rb, "replica-a", b] : [b, ra, "replica-b", a];
    expect(loser).toEqual({ held: false, holder: winnerName });
    const token = (winners[0] as { token: string }).token;

    expect(await winner.renewLease("gc", token, 10_000)).toBe(true);
    expect(await loserIndex.renewLease("gc", "not-the-token", 10_000)).toBe(false);

    await loserIndex.releaseLease("gc", "not-the-token");
    expect(await loserIndex.acquireLease("gc", "late", 10_000)).toEqual({ held: false, holder: winnerName });
    expect(await loserIndex.leaseHeld("gc")).toBe(true);

    await winner.releaseLease("gc", token);
    expect(await loserIndex.leaseHeld("gc")).toBe(false);
    expect((await loserIndex.acquireLease("gc", "late", 10_000)).held).toBe(true);
  });

  it("lets another replica take an expired lease, after which the old token renews nothing", async () => {
    const first = await a.acquireLease("short", "replica-a", 200);
    expect(first.held).toBe(true);
    await new Promise((r) => setTimeout(r, 400));
    const second = await b.acquireLease("short", "replica-b", 10_000);
    expect(second.held).toBe(true);
    expect(await a.renewLease("short", (first as { token: string }).token, 10_000)).toBe(false);
    await a.releaseLease("short", (first as { token: string }).token);
    expect(await a.acquireLease("short", "replica-a", 10_000)).toEqual({ held: false, holder: "replica-b" });
  });

  it("orders the LRU by access (touches flushed by the timer) and sums sizes; deletes leave both", async () => {
    await cli("FLUSHALL");
    const [d1, d2, d3] = [digest("u1"), digest("u2"), digest("u3")];
    for (const [d, size] of [[d1, 100], [d2, 20], [d3, 3]] as const) {
      await a.putBlob(blob(d, size));
      await new Promise((r) => setTimeout(r, 5));
    }
    expect((await b.leastRecentlyUsed(10)).map((e) => e.digest)).toEqual([d1, d2, d3]);
    expect(await b.storedBytes()).toBe(123);
    expect(await b.withoutRows([d1, digest("u4"), d3, digest("u5")])).toEqual([digest("u4"), digest("u5")]);

    a.touch(d1);
    // A touch must not bring back what another replica deleted meanwhile.
    a.touch(digest("gone"));
    await waitFor(async () => (await b.leastRecentlyUsed(10))[2]?.digest === d1, 10_000, "the touch batch to be flushed");
    const lru = await b.leastRecentlyUsed(10);
    expect(lru.map((e) => [e.digest, e.size])).toEqual([
      [d2, 20],
      [d3, 3],
      [d1, 100],
    ]);
    expect(lru[2]!.lastAccess).toBeGreaterThan(lru[1]!.lastAccess);
    expect((await b.leastRecentlyUsed(1)).map((e) => e.digest)).toEqual([d2]);

    await b.deleteBlob(d2);
    expect((await a.leastRecentlyUsed(10)).map((e) => e.digest)).toEqual([d3, d1]);
    expect(await a.storedBytes()).toBe(103);
  });

  it("rejects when Redis answers with an error rather than swallowing it", async () => {
    await cli("HSET", `regcache:blob:${digest("wrongtype")}`, "f", "v");
    await rejectsPromptly(() => a.getBlob(digest("wrongtype")));
    expect(a.available).toBe(false);
    await a.getBlob(digest("a1"));
    expect(a.available).toBe(true);
  });

  it("with Redis killed, every method rejects promptly with SHARED_STORE and touch stays quiet", async () => {
    await redis.kill();
    for (const call of everyCall(a)) await rejectsPromptly(call);
    expect(a.available).toBe(false);
    expect(() => a.touch(digest("u1"))).not.toThrow();
    await a.flushTouches();
  });

  it("with Redis back on the same port, the same instances work again", async () => {
    await redis.restart();
    await waitFor(async () => (await a.getRecord("meta:probe")) === undefined, 15_000, "the index to reconnect");
    expect(a.available).toBe(true);
    await a.putBlob(blob(digest("back"), 7));
    expect(await b.getBlob(digest("back"))).toMatchObject({ size: 7 });
    expect((await b.acquireLease("after", "replica-b", 10_000)).held).toBe(true);
  });

  it("with Redis stalled (SIGSTOP), every method rejects promptly", async () => {
    redis.pause();
    try {
      await Promise.all(everyCall(b).map((call) => rejectsPromptly(call)));
      expect(b.available).toBe(false);
    } finally {
      redis.resume();
    }
    await waitFor(async () => (await b.getRecord("meta:probe")) === undefined, 15_000, "the index to answer again");
  });

  it("opens without Redis (a replica started during its outage serves without it), says so, and uses it once it answers", async () => {
    const later = new TestRedis(PASSWORD);
    const port = await freePort();
    const started = Date.now();
    const c = await RedisFleetIndex.open(`redis://:${PASSWORD}@127.0.0.1:${port}`, logger);
    try {
      expect(Date.now() - started).toBeLessThan(OPEN_BOUND_MS);
      expect(c.available).toBe(false);
      expect(logLines.some((l) => l.includes("Redis cannot be reached") && l.includes(`redis://:redacted@127.0.0.1:${port}`))).toBe(true);
      await rejectsPromptly(() => c.getBlob(digest("later")));
      await later.start(port);
      await waitFor(async () => (await c.getRecord("meta:probe").then(() => true, () => false)) && c.available, 15_000, "the index to answer once Redis is up");
    } finally {
      await c.close();
      await later.stop();
    }
  }, 30_000);

  it("with a wrong password, opens without the index and every call says why", async () => {
    const c = await RedisFleetIndex.open(`redis://:wrong-${PASSWORD}@127.0.0.1:${redis.port}`, logger);
    try {
      expect(c.available).toBe(false);
      const message = await rejectsPromptly(() => c.getBlob(digest("pw")));
      expect(message).not.toContain(`wrong-${PASSWORD}`);
    } finally {
      await c.close();
    }
  }, 30_000);

  it("refuses a URL that is not Redis's as the operator's input, without echoing the password", async () => {
    for (const url of [`redis://:${PASSWORD}@127.0.0.1:${redis.port}/not-a-db`, "http://127.0.0.1:1", "not a url"]) {
      const error = await RedisFleetIndex.open(url, logger).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(error).toMatchObject({ code: "USAGE" });
      expect((error as Error).message).toContain("is not a usable Redis URL");
      expect((error as Error).message).not.toContain(PASSWORD);
    }
  });

  it("closes promptly while Redis is down", async () => {
    const c = await RedisFleetIndex.open(redis.url, logger);
    c.touch(digest("u1"));
    await redis.kill();
    const started = Date.now();
    await c.close();
    expect(Date.now() - started).toBeLessThan(PROMPT_MS);
    await redis.restart();
  });

  it("logs the outage and the recovery, with the URL redacted and never the password", () => {
    const log = logLines.join("");
    expect(log).toContain("Redis connection failed; retrying in the background");
    expect(log).toContain("reconnected to Redis");
    expect(log).toContain(`redis://:redacted@127.0.0.1:${redis.port}`);
    expect(log).not.toContain(PASSWORD);
  });
});
