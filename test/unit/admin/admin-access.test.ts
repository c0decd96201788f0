import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { AdminAccess, isLoopback, readAdminToken } from "../../../src/admin/admin-access.js";

const request = (remoteAddress: string, headers: Record<string, string> = {}): IncomingMessage => ({ headers, socket: { remoteAddress } }) as unknown as IncomingMessage;

describe("isLoopback", () => {
  it.each(["127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.1"])("%s is loopback", (address) => expect(isLoopback(address)).toBe(true));
  it.each(["10.0.0.1", "192.0.2.2", "::ffff:10.0.0.1", "fd00::2", "128.0.0.1", "127.0.0.1.example", "::2", undefined])("%s is not", (address) => expect(isLoopback(address)).toBe(false));
});

describe("AdminAccess", () => {
  it("without a token: loopback peers only", () => {
    const access = new AdminAccess(undefined);
    expect(access.refusal(request("127.0.0.1"))).toBeUndefined();
    expect(access.refusal(request("::1"))).toBeUndefined();
    expect(access.refusal(request("192.0.2.2"))?.status).toBe(403);
    // A token sent to a proxy that has none opens nothing.
    expect(access.refusal(request("192.0.2.2", { authorization: "Bearer anything" }))?.status).toBe(403);
  });

  it("with a token: the exact token as a bearer token, loopback included", () => {
    const access = new AdminAccess("t0ken-value");
    expect(access.refusal(request("192.0.2.2", { authorization: "Bearer t0ken-value" }))).toBeUndefined();
    expect(access.refusal(request("127.0.0.1", { authorization: "bearer t0ken-value" }))).toBeUndefined();
    for (const authorization of [undefined, "Bearer t0ken-valu", "Bearer t0ken-value2", "Basic t0ken-value", "Bearer", "t0ken-value"]) {
      const refusal = access.refusal(request("127.0.0.1", authorization === undefined ? {} : { authorization }));
      expect(refusal?.status, authorization).toBe(401);
      expect(refusal?.headers["www-authenticate"]).toBe('Bearer realm="regcache"');
    }
  });

  it("refuses any request a web page made, whatever else it carries", () => {
    expect(new AdminAccess(undefined).refusal(request("127.0.0.1", { origin: "http://127.0.0.1:3128" }))?.status).toBe(403);
    expect(new AdminAccess("t").refusal(request("127.0.0.1", { origin: "null", authorization: "Bearer t" }))?.status).toBe(403);
  });
});

describe("readAdminToken", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "regcache-admin-token-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string): string => {
    writeFileSync(path.join(dir, name), text);
    return path.join(dir, name);
  };

  it("reads the token without surrounding whitespace", () => {
    expect(readAdminToken(file("ok", "  abc-DEF_123.~+/=\n"))).toBe("abc-DEF_123.~+/=");
  });

  it("refuses an empty file, spaces inside, and a file that is not there", () => {
    expect(() => readAdminToken(file("empty", "\n"))).toThrow(/must hold one token of printable ASCII characters/);
    expect(() => readAdminToken(file("two", "one two\n"))).toThrow(/must hold one token/);
    expect(() => readAdminToken(path.join(dir, "absent"))).toThrow(`cannot read --admin-token ${path.join(dir, "absent")}: no such file or directory`);
  });
});
