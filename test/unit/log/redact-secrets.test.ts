import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../../src/log/logger.js";
import { CENSOR, redactSecrets } from "../../../src/log/redact-secrets.js";

describe("redactSecrets", () => {
  it("returns the object itself when it holds no secret", () => {
    const line = { host: "quay.test", method: "GET", path: "/v2/a/manifests/latest", status: 200, nested: { accept: "*/*" }, list: [1, 2] };
    expect(redactSecrets(line)).toBe(line);
  });

  it("censors top-level credentials, secrets one level down and secret headers, leaving the rest and the original alone", () => {
    const original = {
      authorization: "Basic YWxpY2U6czNjcmV0",
      proxyAuthorization: "Basic cHJveHk6cGFzcw==",
      cookie: "session=abc",
      req: { method: "GET", token: "t0k3n", headers: { authorization: "Bearer x", "proxy-authorization": "Basic y", cookie: "c=1", "set-cookie": "d=2", accept: "*/*" } },
      options: { password: "hunter2", user: "alice", "set-cookie": "e=3" },
      kept: "visible",
    };
    const snapshot = structuredClone(original);
    expect(redactSecrets(original)).toEqual({
      authorization: CENSOR,
      proxyAuthorization: CENSOR,
      cookie: CENSOR,
      req: { method: "GET", token: CENSOR, headers: { authorization: CENSOR, "proxy-authorization": CENSOR, cookie: CENSOR, "set-cookie": CENSOR, accept: "*/*" } },
      options: { password: CENSOR, user: "alice", "set-cookie": CENSOR },
      kept: "visible",
    });
    expect(original).toEqual(snapshot);
  });

  it("keeps an error an error (message, stack) when censoring a field of it", () => {
    const err = Object.assign(new Error("upstream refused"), { password: "hunter2" });
    const out = redactSecrets({ err }) as { err: Error & { password: string } };
    expect(out.err).toBeInstanceOf(Error);
    expect(out.err.message).toBe("upstream refused");
    expect(out.err.stack).toBe(err.stack);
    expect(out.err.password).toBe(CENSOR);
    expect(err.password).toBe("hunter2");
  });

  it("is what the logger writes: no credential reaches a line", () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk: Buffer, _enc, done) => (lines.push(chunk.toString()), done()) });
    createLogger("info", sink).info({ authorization: "Basic c2VjcmV0", req: { headers: { cookie: "s=xyzzy-1" } }, err: Object.assign(new Error("x"), { token: "xyzzy-2" }) }, "request");
    expect(lines).toHaveLength(1);
    expect(lines[0]).not.toContain("xyzzy");
    expect(lines[0]).not.toContain("c2VjcmV0");
    expect(JSON.parse(lines[0]!)).toMatchObject({ authorization: CENSOR, req: { headers: { cookie: CENSOR } }, err: { message: "x", token: CENSOR } });
  });
});
