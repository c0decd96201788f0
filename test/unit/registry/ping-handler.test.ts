import type { IncomingMessage, ServerResponse } from "node:http";
import { describe, expect, it } from "vitest";
import type { AccessControl } from "../../../src/registry/access-control.js";
import { PingHandler } from "../../../src/registry/ping-handler.js";
import type { RegistryRequest } from "../../../src/registry/request-context.js";
import type { UpstreamClient } from "../../../src/upstream/client.js";
import { UpstreamError, type UpstreamFailure } from "../../../src/upstream/upstream-error.js";

function ping(failure: UpstreamFailure) {
  const written: { status?: number; body?: unknown } = {};
  const res = {
    writeHead(status: number) {
      written.status = status;
      return this;
    },
    end(body?: unknown) {
      written.body = body;
    },
  } as unknown as ServerResponse;
  const rr: RegistryRequest = { req: { method: "GET", url: "/v2/", headers: {} } as IncomingMessage, res, host: "r.test", port: 443, log: { host: "r.test", method: "GET", path: "/v2/" } };
  const upstream: UpstreamClient = { request: () => Promise.reject(new UpstreamError(failure, "r.test", "x")) };
  const access = { offlinePingChallenge: async () => undefined } as unknown as AccessControl;
  return { handled: new PingHandler(upstream, access).handle(rr), written };
}

describe("PingHandler while upstream cannot answer", () => {
  it("says 200 {} itself when upstream is out", async () => {
    const { handled, written } = ping("connect");
    await handled;
    expect(written).toEqual({ status: 200, body: "{}" });
  });

  it("does not for an address the policy refuses: that failure is answered as it is (403)", async () => {
    const { handled, written } = ping("refused-address");
    await expect(handled).rejects.toMatchObject({ code: "UPSTREAM_ADDRESS_REFUSED" });
    expect(written).toEqual({});
  });
});
