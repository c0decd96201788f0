import { describe, expect, it } from "vitest";
import { createLogger } from "../../../src/log/logger.js";
import type { Send, UpstreamRequest, UpstreamResponse } from "../../../src/upstream/client.js";
import { UpstreamHealth } from "../../../src/upstream/health.js";
import { withCredentials, withHealth, withObserver } from "../../../src/upstream/layers.js";
import { ProxyCredentials } from "../../../src/upstream/proxy-credentials.js";
import { UpstreamError } from "../../../src/upstream/upstream-error.js";

const REQ: UpstreamRequest = { host: "r.test", port: 443, method: "GET", path: "/v2/", headers: {} };
const answer = (statusCode: number): UpstreamResponse => ({ statusCode, headers: {}, body: { dump: async () => undefined } }) as unknown as UpstreamResponse;
const failing = (code: string): Send => async () => {
  throw Object.assign(new Error(code), { code });
};

describe("withHealth", () => {
  const health = (): UpstreamHealth => new UpstreamHealth(1, 60_000, async () => false, createLogger("silent"));

  it("opens the circuit on an upstream fault or an unavailable answer, and then fails fast without sending", async () => {
    for (const send of [failing("ECONNREFUSED"), async () => answer(503)]) {
      const h = health();
      let sent = 0;
      const request = withHealth(h, (req) => (sent++, send(req)));
      await request(REQ).catch(() => undefined);
      expect(h.isDown("r.test")).toBe(true);
      await expect(request(REQ)).rejects.toMatchObject({ failure: "circuit-open" });
      expect(sent).toBe(1);
      h.stop();
    }
  });

  it("says a 429 host is rate-limited, and a client's abort says nothing of the host", async () => {
    const limited = health();
    await withHealth(limited, async () => answer(429))(REQ);
    await expect(withHealth(limited, async () => answer(200))(REQ)).rejects.toMatchObject({ failure: "circuit-open", rateLimited: true });
    limited.stop();
    const aborted = health();
    await expect(withHealth(aborted, async () => Promise.reject(new UpstreamError("request", "r.test", "client left")))(REQ)).rejects.toMatchObject({ failure: "request" });
    expect(aborted.isDown("r.test")).toBe(false);
  });
});

describe("withObserver", () => {
  it("reports a status, or the classified failure, once per exchange", async () => {
    const seen: unknown[] = [];
    const observe = (host: string, status: number | undefined, failure: string | undefined): void => void seen.push([host, status, failure]);
    await withObserver(observe, async () => answer(404))(REQ);
    await expect(withObserver(observe, failing("ENOTFOUND"))(REQ)).rejects.toBeInstanceOf(UpstreamError);
    expect(seen).toEqual([["r.test", 404, undefined], ["r.test", undefined, "dns"]]);
  });
});

describe("withCredentials", () => {
  it("adds the held credential for its host only, and never to anonymous requests", async () => {
    const sent: UpstreamRequest[] = [];
    const request = withCredentials(new ProxyCredentials(new Map([["r.test", { token: "t0k" }]])), async (req) => (sent.push(req), answer(200)));
    await request(REQ);
    await request({ ...REQ, anonymous: true });
    await request({ ...REQ, host: "other.test" });
    expect(sent.map((r) => r.headers.authorization)).toEqual(["Bearer t0k", undefined, undefined]);
  });

  it("is no layer at all without credentials", () => {
    const send: Send = async () => answer(200);
    expect(withCredentials(undefined, send)).toBe(send);
  });
});
