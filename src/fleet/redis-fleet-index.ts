import { randomUUID } from "node:crypto";
import KeyvRedis, { createClient } from "@keyv/redis";
import Keyv from "keyv";
import { addLink } from "../cache/cache-index.js";
import { recordLinkType } from "../cache/manifest-types.js";
import { redactUrl } from "../config/redact-url.js";
import { RegcacheError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import type { FleetBlob, FleetIndex, LeaseResult } from "./fleet-index.js";

/**
 * The data layout in Redis:
 *
 *   regcache:blob:<digest>        -> FleetBlob (a keyv row)
 *   regcache:tag:<tagKey>         -> tag record (a keyv row)
 *   regcache:meta:<kind>:<key>    -> other shared records (keyv rows)
 *   regcache:lease:<name>         -> "<holder>|<token>", with a TTL
 *   regcache:lru                  -> sorted set: digest scored by last access (ms)
 *   regcache:sizes                -> hash: digest -> size, beside the LRU so the evictor reads no rows
 */
const NAMESPACE = "regcache";
const BLOB_PREFIX = "blob:";
const LEASE_PREFIX = `${NAMESPACE}:lease:`;
const LRU_KEY = `${NAMESPACE}:lru`;
const SIZES_KEY = `${NAMESPACE}:sizes`;

/** The interface promises an answer within about a second: a stalled server gets no longer. */
const COMMAND_TIMEOUT_MS = 1_000;
const CONNECT_TIMEOUT_MS = 1_000;
/** How long start-up waits for a first connection before going on without the index. */
const OPEN_TIMEOUT_MS = 3_000;
/** Reconnects never stop (Redis coming back must be noticed without a restart), backing off to this. */
const MAX_RECONNECT_DELAY_MS = 2_000;
/** Access times are batched: a round trip per cache hit would cost more than the hit. */
const TOUCH_FLUSH_MS = 2_000;
/** While Redis is away every command fails: one warning per kind a minute says so. */
const WARN_EVERY_MS = 60_000;

/** Compare-and-pexpire: only the holder's token extends its lease. */
const RENEW_SCRIPT = `
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, -(#ARGV[1] + 1)) == '|' .. ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`;
/** Compare-and-del: a holder whose lease expired must not delete its successor's. */
const RELEASE_SCRIPT = `
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, -(#ARGV[1] + 1)) == '|' .. ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`;

type Client = ReturnType<typeof createClient>;

/** The fleet index (--index redis://...) on one Redis server, shared by every replica. */
export class RedisFleetIndex implements FleetIndex {
  private readonly touched = new Map<string, number>();
  private readonly warnedAt = new Map<string, number>();
  private readonly flushTimer: NodeJS.Timeout;
  private lastCommandOk: boolean;
  private closed = false;

  private constructor(
    private readonly client: Client,
    private readonly keyv: Keyv,
    /** The URL without its password: the only form that is logged or put in messages. */
    private readonly shownUrl: string,
    private readonly logger: Logger,
    connected: boolean,
  ) {
    this.lastCommandOk = connected;
    this.flushTimer = setInterval(() => void this.flushTouches(), TOUCH_FLUSH_MS);
    this.flushTimer.unref();
  }

  static async open(url: string, logger: Logger): Promise<RedisFleetIndex> {
    const shownUrl = redactUrl(url);
    let client: Client;
    try {
      client = createClient({
        url,
        disableOfflineQueue: true,
        socket: {
          connectTimeout: CONNECT_TIMEOUT_MS,
          reconnectStrategy: (retries: number) => Math.min(100 * 2 ** retries, MAX_RECONNECT_DELAY_MS),
        },
      });
    } catch (err) {
      throw new RegcacheError("USAGE", `--index ${shownUrl} is not a usable Redis URL (redis://[:password@]host:port[/db]): ${messageOf(err)}`, { cause: err });
    }
    let lastError: unknown;
    let index: RedisFleetIndex | undefined;
    // Also what keeps an unheard 'error' event from crashing the process: failures reach callers as rejections.
    client.on("error", (err: unknown) => {
      lastError = err;
      index?.warn("connection", "fleet index: Redis connection failed; retrying in the background", err);
    });
    // connect() keeps retrying by the reconnect strategy. Start-up waits a little for Redis (it may
    // be starting beside regcache), then goes on without it: a replica started during Redis's
    // outage serves as a single replica would, and uses the index once it answers.
    const connecting = client.connect().catch((err: unknown) => {
      lastError = err;
    });
    const connected = await withTimeout(connecting.then(() => client.isReady || Promise.reject(lastError)), OPEN_TIMEOUT_MS).then(
      () => true,
      () => false,
    );
    const adapter = new KeyvRedis(client, { namespace: NAMESPACE, keyPrefixSeparator: ":", throwOnErrors: true, throwOnConnectError: true });
    // The adapter already prefixes "regcache:": keyv's own prefix would double it.
    const keyv = new Keyv({ store: adapter, namespace: NAMESPACE, useKeyPrefix: false, throwOnErrors: true });
    // Failures reach callers as rejections; these listeners only keep an unheard 'error' event from crashing the process.
    adapter.on("error", () => undefined);
    keyv.on("error", () => undefined);
    client.on("ready", () => logger.info({ index: shownUrl }, "fleet index: reconnected to Redis"));
    index = new RedisFleetIndex(client, keyv, shownUrl, logger, connected);
    if (connected) logger.info({ index: shownUrl }, "fleet index: connected to Redis");
    else logger.warn({ index: shownUrl, err: messageOf(lastError ?? "no answer") }, "fleet index: Redis cannot be reached; serving without it (single flight per replica, local tag answers) and retrying in the background");
    return index;
  }

  get available(): boolean {
    return this.lastCommandOk;
  }

  async getBlob(digest: string): Promise<FleetBlob | undefined> {
    return this.run(`reading the row of ${digest}`, () => this.keyv.get<FleetBlob>(BLOB_PREFIX + digest));
  }

  async putBlob(entry: FleetBlob): Promise<void> {
    await this.run(`writing the row of ${entry.digest}`, async () => {
      // Row first: an LRU member without a row would be evicted for an object nobody can find.
      await this.keyv.set(BLOB_PREFIX + entry.digest, entry);
      await this.client
        .multi()
        .zAdd(LRU_KEY, { score: entry.storedAt, value: entry.digest })
        .hSet(SIZES_KEY, entry.digest, String(entry.size))
        .exec();
    });
  }

  /**
   * Read-modify-write without a lock: two replicas linking the same digest at once may lose one
   * link, which costs only one upstream re-check the next time that repository asks for it.
   */
  async link(digest: string, hostRepository: string, contentType?: string): Promise<void> {
    await this.run(`linking ${digest} to ${hostRepository}`, async () => {
      const entry = await this.keyv.get<FleetBlob>(BLOB_PREFIX + digest);
      if (!entry) return;
      const linked = addLink(entry.links, hostRepository);
      const typed = recordLinkType(entry, hostRepository, contentType);
      if (!linked && !typed) return;
      await this.keyv.set(BLOB_PREFIX + digest, entry);
    });
  }

  async deleteBlob(digest: string): Promise<void> {
    this.touched.delete(digest);
    await this.run(`deleting the row of ${digest}`, async () => {
      await this.client.multi().zRem(LRU_KEY, digest).hDel(SIZES_KEY, digest).exec();
      await this.keyv.delete(BLOB_PREFIX + digest);
    });
  }

  touch(digest: string): void {
    this.touched.set(digest, Date.now());
  }

  async leastRecentlyUsed(limit: number): Promise<{ digest: string; size: number; lastAccess: number }[]> {
    if (limit <= 0) return [];
    return this.run("reading the LRU", async () => {
      const members = await this.client.zRangeWithScores(LRU_KEY, 0, limit - 1);
      if (members.length === 0) return [];
      const sizes = await this.client.hmGet(
        SIZES_KEY,
        members.map((m) => m.value),
      );
      return members.map((m, i) => ({ digest: m.value, size: Number(sizes[i] ?? 0), lastAccess: m.score }));
    });
  }

  async withoutRows(digests: string[]): Promise<string[]> {
    if (digests.length === 0) return [];
    return this.run("looking up rows", async () => {
      const sizes = await this.client.hmGet(SIZES_KEY, digests);
      return digests.filter((_, i) => sizes[i] === null || sizes[i] === undefined);
    });
  }

  /** Sums the sizes hash: one HVALS, cheap for the tens of thousands of objects an object store holds. */
  async storedBytes(): Promise<number> {
    return this.run("reading the stored size", async () => {
      const sizes = await this.client.hVals(SIZES_KEY);
      return sizes.reduce((sum, s) => sum + Number(s), 0);
    });
  }

  async getRecord<T>(key: string): Promise<T | undefined> {
    return this.run(`reading ${key}`, () => this.keyv.get<T>(key));
  }

  async putRecord(key: string, value: unknown): Promise<void> {
    await this.run(`writing ${key}`, () => this.keyv.set(key, value));
  }

  async acquireLease(name: string, holder: string, ttlMs: number): Promise<LeaseResult> {
    const key = LEASE_PREFIX + name;
    const token = randomUUID();
    return this.run(`acquiring the lease ${name}`, async () => {
      // Twice at most: the holder's lease may expire between our SET and our GET.
      for (let attempt = 0; attempt < 2; attempt++) {
        const set = await this.client.set(key, `${holder}|${token}`, { condition: "NX", expiration: { type: "PX", value: ttlMs } });
        if (set !== null) return { held: true, token };
        const value = await this.client.get(key);
        if (value !== null) return { held: false, holder: value.slice(0, value.lastIndexOf("|")) };
      }
      // Taken and gone twice in a row: someone holds it with leases shorter than a round trip.
      return { held: false, holder: "" };
    });
  }

  async renewLease(name: string, token: string, ttlMs: number): Promise<boolean> {
    const renewed = await this.run(`renewing the lease ${name}`, () =>
      this.client.eval(RENEW_SCRIPT, { keys: [LEASE_PREFIX + name], arguments: [token, String(ttlMs)] }),
    );
    return renewed === 1;
  }

  async leaseHeld(name: string): Promise<boolean> {
    return (await this.run(`reading the lease ${name}`, () => this.client.exists(LEASE_PREFIX + name))) === 1;
  }

  async releaseLease(name: string, token: string): Promise<void> {
    await this.run(`releasing the lease ${name}`, () => this.client.eval(RELEASE_SCRIPT, { keys: [LEASE_PREFIX + name], arguments: [token] }));
  }

  /** Writes the access times batched so far; never rejects (a lost batch only ages some objects in the LRU). */
  async flushTouches(): Promise<void> {
    if (this.touched.size === 0 || this.closed) return;
    const batch = [...this.touched].map(([value, score]) => ({ value, score }));
    this.touched.clear();
    try {
      // XX: a touch must not bring back an object deleted meanwhile; GT: nor set back another replica's later access.
      await this.run("recording access times", () => this.client.zAdd(LRU_KEY, batch, { condition: "XX", comparison: "GT" }));
    } catch (err) {
      this.warn("touch", "fleet index: access times not recorded (the LRU ages those objects until their next read)", err);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    clearInterval(this.flushTimer);
    await this.flushTouches();
    this.closed = true;
    // A polite close waits for replies a stalled or absent server never sends.
    if (this.client.isReady) {
      try {
        await withTimeout(this.client.close(), COMMAND_TIMEOUT_MS);
        return;
      } catch {
        // falls through to destroy
      }
    }
    if (this.client.isOpen) this.client.destroy();
  }

  /** Bounds an operation to COMMAND_TIMEOUT_MS and turns any failure into SHARED_STORE. */
  private async run<T>(what: string, operation: () => Promise<T>): Promise<T> {
    if (this.closed) throw new RegcacheError("SHARED_STORE", `fleet index: ${what}: the index is closed`);
    try {
      const result = await withTimeout(operation(), COMMAND_TIMEOUT_MS);
      this.lastCommandOk = true;
      return result;
    } catch (err) {
      this.lastCommandOk = false;
      throw new RegcacheError("SHARED_STORE", `fleet index (Redis at ${this.shownUrl}): ${what} failed: ${messageOf(err)}`, { cause: err });
    }
  }

  private warn(kind: string, msg: string, err: unknown): void {
    const now = Date.now();
    if (now - (this.warnedAt.get(kind) ?? 0) < WARN_EVERY_MS) return;
    this.warnedAt.set(kind, now);
    this.logger.warn({ index: this.shownUrl, reason: messageOf(err) }, msg);
  }
}

async function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** An error in words; a connection refused on every address of a name is an AggregateError with no message, only a code. */
function messageOf(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  return err.message || (err as NodeJS.ErrnoException).code || err.name;
}
