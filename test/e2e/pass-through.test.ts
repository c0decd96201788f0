import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { curlThrough } from "./harness/clients.js";
import { TestEnvironment } from "./harness/environment.js";
import { FakeUpstream } from "./harness/fake-upstream.js";
import { exchange, tlsDirect, tlsThroughProxy, type RawRequest, type RawResponse } from "./harness/raw-http.js";
import type { RegcacheProcess } from "./harness/regcache-process.js";
import { missingTools } from "./harness/tools.js";

const missing = missingTools("docker-registry", "openssl", "curl");

/**
 * An upstream that answers every request with what it received (method, path, body length
 * and hash), framed as the query asks: Content-Length, chunked, or until close.
 */
function echo(req: IncomingMessage, res: ServerResponse): void {
  const hash = createHash("sha256");
  let length = 0;
  req.on("data", (chunk: Buffer) => {
    hash.update(chunk);
    length += chunk.length;
  });
  req.on("end", () => {
    const url = new URL(req.url ?? "/", "https://open.test");
    const body = Buffer.from(JSON.stringify({ method: req.method, path: req.url, bodyBytes: length, bodySha256: hash.digest("hex") }));
    const status = Number(url.searchParams.get("status") ?? 200);
    res.setHeader("content-type", "application/json");
    res.setHeader("x-echo", "1");
    if (status === 401) res.setHeader("www-authenticate", 'Bearer realm="https://open.test/token",service="open.test"');
    switch (url.searchParams.get("framing")) {
      case "chunked":
        res.writeHead(status);
        res.write(body.subarray(0, 10));
        res.end(body.subarray(10));
        return;
      case "close":
        res.setHeader("connection", "close");
        res.removeHeader("transfer-encoding");
        res.writeHead(status);
        res.end(body);
        return;
      default:
        res.setHeader("content-length", body.length);
        res.writeHead(status);
        res.end(body);
    }
  });
}

/** What a client can observe of a response, minus what legitimately differs through a proxy. */
function observable(r: RawResponse): object {
  const { date: _date, connection: _connection, "keep-alive": _keepAlive, "transfer-encoding": _te, "x-cache": _xc, "cache-status": _cs, ...headers } = r.headers;
  if (r.headers["transfer-encoding"] || r.headers.connection === "close") delete headers["content-length"];
  return { status: r.status, headers, body: r.body.toString("latin1") };
}

const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
const PATHS = ["/v2/team/app/blobs/uploads/", "/v2/team/app/manifests/v1", `/v2/team/app/blobs/sha256:${"ab".repeat(32)}`, "/v2/", "/token"];
const SMALL = randomBytes(1024);
const LARGE = randomBytes(3 * 1024 * 1024 + 17);
const BODIES: [string, Pick<RawRequest, "body" | "chunked" | "awaitContinue">][] = [
  ["no body", {}],
  ["1 KiB with Content-Length", { body: SMALL }],
  ["3 MiB chunked", { body: LARGE, chunked: true }],
  ["3 MiB with Expect: 100-continue", { body: LARGE, awaitContinue: true }],
];

describe.skipIf(missing.length > 0)("requests regcache does not cache stream through intact", () => {
  let env: TestEnvironment;
  let upstream: FakeUpstream;
  let proxy: RegcacheProcess;
  let regcacheCa: string;

  beforeAll(async () => {
    env = new TestEnvironment("pass-through");
    upstream = new FakeUpstream(env.pki, echo);
    await upstream.start();
    proxy = env.regcache("pass", [...upstream.resolveArg("open.test"), "--failure-threshold", "3"]);
    await proxy.start();
    regcacheCa = readFileSync(proxy.caFile, "utf8");
  });
  afterAll(async () => {
    await upstream?.stop();
    await env?.cleanup();
  });

  const direct = async (requests: RawRequest[]): Promise<RawResponse[]> =>
    exchange(await tlsDirect(upstream.port, "127.0.0.1", "open.test", readFileSync(env.pki.caCert, "utf8")), requests);
  const through = async (requests: RawRequest[]): Promise<RawResponse[]> => exchange(await tlsThroughProxy(proxy.port, "open.test:443", "open.test", regcacheCa), requests);
  const healthy = async (): Promise<number> => (await fetch(`${proxy.proxyUrl}/healthz`)).status;

  it.each(METHODS.flatMap((method) => BODIES.map(([label, body]) => [method, label, body] as const)))("%s, %s: every path answers as directly, and the proxy stays up", async (method, _label, body) => {
    for (const path of PATHS) {
      for (const framing of ["length", "chunked", "close"]) {
        const request: RawRequest = { method, path: `${path}?framing=${framing}`, host: "open.test", ...body };
        const [want] = await direct([request]);
        const [got] = await through([request]);
        expect(observable(got!), `${method} ${request.path}`).toEqual(observable(want!));
        if (body.awaitContinue) expect(got!.interim, "a 100 Continue before the final answer").toEqual([100]);
      }
      expect(await healthy()).toBe(200);
    }
  });

  it("answers pipelined requests in order, each byte-identical to the direct answer", async () => {
    const requests: RawRequest[] = [
      { method: "GET", path: "/token?framing=length", host: "open.test" },
      { method: "POST", path: "/v2/team/app/blobs/uploads/?framing=chunked", host: "open.test", body: SMALL },
      { method: "PATCH", path: "/v2/team/app/blobs/uploads/abc?framing=length", host: "open.test", body: LARGE, chunked: true },
      { method: "HEAD", path: "/token?framing=length", host: "open.test" },
      { method: "GET", path: "/v2/?framing=length", host: "open.test" },
    ];
    const want = await direct(requests);
    const before = proxy.requestLogs().length;
    const got = await through(requests);
    expect(got.map(observable)).toEqual(want.map(observable));
    const lines = (await proxy.waitForRequestLogs(before + requests.length)).slice(before);
    // Each line counts its own response's body, not the connection's running total.
    expect(lines.map((l) => [l.method, l.bytes])).toEqual(got.map((r, i) => [requests[i]!.method, r.body.length]));
  });

  it("client-caused failures never mark a healthy upstream down", async () => {
    for (let i = 0; i < 10; i++) {
      const socket = await tlsThroughProxy(proxy.port, "open.test:443", "open.test", regcacheCa);
      // Announces 5 MB, sends 64 KiB, leaves: the upload fails because of the client alone.
      socket.write(`PUT /v2/team/app/blobs/uploads/x${i} HTTP/1.1\r\nHost: open.test\r\nContent-Length: 5000000\r\n\r\n`);
      socket.write(randomBytes(65_536));
      await new Promise((r) => setTimeout(r, 50));
      socket.destroy();
    }
    await proxy.waitForLog((l) => l.msg === "request" && l.path === "/v2/team/app/blobs/uploads/x9");
    expect(proxy.logs.filter((l) => l.msg === "upstream marked down; serving from cache")).toEqual([]);
    const after = await curlThrough(proxy, "https://open.test/v2/team/app/manifests/v2?framing=length");
    expect(after.status).toBe(200);
    expect(JSON.parse(after.body.toString())).toMatchObject({ method: "GET", path: "/v2/team/app/manifests/v2?framing=length" });
    expect(await healthy()).toBe(200);
    // Aborted uploads are ordinary: no stack traces at warn or above.
    expect(proxy.logs.filter((l) => l.level >= 40 && JSON.stringify(l).includes("    at "))).toEqual([]);
  });

  it("relays upstream's refusals and challenges as they are", async () => {
    const request: RawRequest = { method: "POST", path: "/token?status=401", host: "open.test", body: SMALL };
    const [want] = await direct([request]);
    const [got] = await through([request]);
    expect(observable(got!)).toEqual(observable(want!));
    expect(got!.headers["www-authenticate"]).toContain("Bearer");
  });
});

describe.skipIf(missing.length > 0)("CONNECT to an IP literal", () => {
  let env: TestEnvironment;

  beforeAll(async () => {
    env = new TestEnvironment("ip-literal");
  });
  afterAll(async () => env?.cleanup());

  it.each([
    ["IPv6", "::1", (port: number) => `https://[::1]:${port}/v2/x?framing=length`],
    ["IPv4", "127.0.0.1", (port: number) => `https://127.0.0.1:${port}/v2/x?framing=length`],
  ])("%s: the leaf carries an IP SAN that curl accepts, and the request goes through", async (_family, address, url) => {
    const upstream = new FakeUpstream(env.pki, echo);
    await upstream.start(address);
    const proxy = env.regcache(`ip-${address.replace(/\W/g, "")}`, ["--allow-port", String(upstream.port)]);
    await proxy.start();
    try {
      const res = await curlThrough(proxy, url(upstream.port), ["-X", "POST", "--data-binary", "hello"]);
      expect(res.exitCode).toBe(0);
      expect(res.status).toBe(200);
      expect(JSON.parse(res.body.toString())).toMatchObject({ method: "POST", bodyBytes: 5 });
    } finally {
      await upstream.stop();
    }
  });
});
