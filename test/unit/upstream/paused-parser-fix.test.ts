import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Dialer } from "../../../src/upstream/dialer.js";
import { UpstreamTransport } from "../../../src/upstream/transport.js";
import { ResolveMap } from "../../../src/upstream/resolve-map.js";
import { RawTlsUpstream, answerThenDropTcp } from "../../e2e/harness/raw-upstream.js";
import { createTestPki } from "../../e2e/harness/test-ca.js";

/**
 * nodejs/undici#5360: a complete `Connection: close` response whose body is paused by
 * backpressure when the peer's FIN arrives ended the process with an uncatchable assertion.
 * Without finishPausedParserOnEnd this file's worker dies on the first iteration.
 */
describe("upstream closes right after a complete body while the reader is paused", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "regcache-paused-parser-"));
  const pki = createTestPki(dir, ["close.test"]);
  // Exactly the client's 1 MiB body buffer: the last bytes fill it, so the parser pauses with nothing
  // left to read but the FIN.
  const body = randomBytes(1024 * 1024);
  const expected = createHash("sha256").update(body).digest("hex");
  let upstream: RawTlsUpstream;
  let client: UpstreamTransport;

  beforeAll(async () => {
    upstream = new RawTlsUpstream(pki, (req, tls, tcp) => {
      const sent = req.path === "/truncated" ? body.subarray(0, body.length - 1000) : body;
      answerThenDropTcp(tls, tcp, `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`, sent);
    });
    await upstream.start();
    const dialer = new Dialer(new ResolveMap([{ from: { host: "close.test", port: 443 }, to: { host: "127.0.0.1", port: upstream.port } }]), false);
    client = new UpstreamTransport(dialer, [readFileSync(pki.caCert, "utf8")], { connect: 5_000, headers: 5_000, body: 10_000 });
  });
  afterAll(async () => {
    await client?.destroy();
    await upstream?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Reads nothing until the whole response has arrived and the FIN with it, then everything. */
  const readLate = async (p: string): Promise<string> => {
    const response = await client.send({ host: "close.test", port: 443, method: "GET", path: p, headers: {} });
    await new Promise((r) => setTimeout(r, 150));
    const hash = createHash("sha256");
    for await (const chunk of response.body) hash.update(chunk as Buffer);
    return hash.digest("hex");
  };

  it("delivers every complete body, 50 times", async () => {
    for (let i = 0; i < 50; i++) expect(await readLate("/whole")).toBe(expected);
  });

  it("fails a truncated body instead of completing it", async () => {
    await expect(readLate("/truncated")).rejects.toThrow();
  });
});
