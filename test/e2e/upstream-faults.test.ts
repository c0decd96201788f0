import { createHash, randomBytes } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import { createServer, type Server } from "node:net";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { curlThrough, type CurlResult } from "./harness/clients.js";
import { TestEnvironment } from "./harness/environment.js";
import { RawTlsUpstream, answerThenDropTcp } from "./harness/raw-upstream.js";
import type { RegcacheProcess } from "./harness/regcache-process.js";
import { waitFor } from "./harness/ports.js";
import { missingTools } from "./harness/tools.js";

const missing = missingTools("openssl", "curl");

const sha256 = (b: Buffer): string => `sha256:${createHash("sha256").update(b).digest("hex")}`;

describe.skipIf(missing.length > 0)("an upstream that closes TCP without a TLS close_notify after Connection: close", () => {
  let env: TestEnvironment;
  let upstream: RawTlsUpstream;
  let proxy: RegcacheProcess;
  const blobs = new Map<string, Buffer>();
  const truncated = randomBytes(1024 * 1024);

  beforeAll(async () => {
    env = new TestEnvironment("upstream-close");
    // 1 MiB is undici's body buffer here: the size at which a paused parser meets the FIN (nodejs/undici#5360).
    for (let i = 0; i < 50; i++) {
      const blob = randomBytes(1024 * 1024);
      blobs.set(sha256(blob), blob);
    }
    upstream = new RawTlsUpstream(env.pki, (req, tls, tcp) => {
      const digest = req.path.split("/").pop()!;
      const blob = blobs.get(digest) ?? (digest === sha256(truncated) ? truncated : undefined);
      if (!blob) {
        answerThenDropTcp(tls, tcp, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", Buffer.alloc(0));
        return;
      }
      const sent = blob === truncated ? blob.subarray(0, blob.length - 4096) : blob;
      answerThenDropTcp(tls, tcp, `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${blob.length}\r\nConnection: close\r\n\r\n`, sent);
    });
    await upstream.start();
    proxy = env.regcache("close", upstream.resolveArg("close.test"));
    await proxy.start();
  });
  afterAll(async () => {
    await upstream?.stop();
    await env?.cleanup();
  });

  it("serves 50 cold blobs whole and right, and stays up", async () => {
    for (const [digest, blob] of blobs) {
      const res = await curlThrough(proxy, `https://close.test/v2/lab/app/blobs/${digest}`);
      expect(res.status, digest).toBe(200);
      expect(sha256(res.body), digest).toBe(sha256(blob));
    }
    expect((await fetch(`${proxy.proxyUrl}/healthz`)).status).toBe(200);
  });

  it("cuts a truncated body for the client and caches nothing", async () => {
    const digest = sha256(truncated);
    const res = await curlThrough(proxy, `https://close.test/v2/lab/app/blobs/${digest}`);
    expect(res.exitCode).not.toBe(0);
    expect(res.body.length).toBeLessThan(truncated.length);
    await proxy.waitForLog((l) => l.msg === "download failed; nothing cached" && l.digest === digest);
    expect(existsSync(path.join(proxy.dataDir, "blobs", "sha256", digest.slice(7, 9), digest.slice(7)))).toBe(false);
    expect((await fetch(`${proxy.proxyUrl}/healthz`)).status).toBe(200);
  });
});

/** What the client got is not a complete, successful body: a cut transfer or an error status. */
function refusedOrCut(res: CurlResult, size: number): boolean {
  return res.exitCode !== 0 || res.status >= 400 || res.body.length < size;
}

describe.skipIf(missing.length > 0)("misbehaving upstreams: every fault fails one request, cleanly, and nothing wrong is cached", () => {
  let env: TestEnvironment;
  let upstream: RawTlsUpstream;
  let silent: Server;
  let proxy: RegcacheProcess;
  const blob = randomBytes(2 * 1024 * 1024);
  // Each fault asks for its own digest: requests for one digest share one download.
  const digestFor = (fault: string): string => sha256(Buffer.concat([blob, Buffer.from(fault)]));

  beforeAll(async () => {
    env = new TestEnvironment("faults");
    upstream = new RawTlsUpstream(env.pki, (req, tls, tcp) => {
      const fault = req.path.split("/")[3];
      const head = (length: number | "chunked", type = "application/octet-stream"): string =>
        `HTTP/1.1 200 OK\r\nContent-Type: ${type}\r\n${length === "chunked" ? "Transfer-Encoding: chunked" : `Content-Length: ${length}`}\r\n\r\n`;
      switch (fault) {
        case "truncated":
          answerThenDropTcp(tls, tcp, head(blob.length), blob.subarray(0, blob.length / 2));
          return;
        case "reset":
          tls.write(head(blob.length));
          tls.write(blob.subarray(0, 100_000), () => tcp.resetAndDestroy());
          return;
        case "hang":
          return;
        case "endless": {
          tls.write(head("chunked"));
          const chunk = Buffer.concat([Buffer.from("10000\r\n"), randomBytes(0x10000), Buffer.from("\r\n")]);
          const more = (): void => void (!tls.destroyed && tls.write(chunk) ? setImmediate(more) : tls.once("drain", more));
          more();
          return;
        }
        case "drip": {
          tls.write(head(blob.length));
          let at = 0;
          const timer = setInterval(() => (tls.destroyed ? clearInterval(timer) : tls.write(blob.subarray(at, (at += 10)))), 100);
          return;
        }
        case "wrong":
          answerThenDropTcp(tls, tcp, head(blob.length), randomBytes(blob.length));
          return;
        case "huge-manifest":
          tls.write(head(200 * 1024 * 1024, "application/vnd.oci.image.manifest.v1+json"));
          tls.write(randomBytes(1024 * 1024));
          return;
        case "endless-manifest": {
          tls.write(head("chunked", "application/vnd.oci.image.manifest.v1+json"));
          const chunk = Buffer.concat([Buffer.from("10000\r\n"), Buffer.alloc(0x10000, 0x20), Buffer.from("\r\n")]);
          const more = (): void => void (!tls.destroyed && tls.write(chunk) ? setImmediate(more) : tls.once("drain", more));
          more();
          return;
        }
        case "loop":
          answerThenDropTcp(tls, tcp, `HTTP/1.1 302 Found\r\nLocation: ${req.path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`, Buffer.alloc(0));
          return;
      }
    });
    await upstream.start();
    // Accepts TCP and never answers the TLS ClientHello.
    silent = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const silentPort = (silent.address() as { port: number }).port;
    proxy = env.regcache("faults", [
      ...upstream.resolveArg("bad.test"),
      "--resolve", `down.test:443=127.0.0.1:${silentPort}`,
      "--headers-timeout", "2s",
      "--connect-timeout", "2s",
      "--body-timeout", "3s",
      "--max-blob-size", "8MiB",
      "--abandon-after", "1s",
      "--failure-threshold", "100",
    ]);
    await proxy.start();
  });
  afterAll(async () => {
    await upstream?.stop();
    silent?.close();
    await env?.cleanup();
  });

  const blobUrl = (fault: string, host = "bad.test"): string => `https://${host}/v2/lab/${fault}/blobs/${digestFor(fault)}`;

  it.each([
    ["a body cut short (truncated)", "truncated", []],
    ["a connection reset mid-body", "reset", []],
    ["no response headers (hang)", "hang", []],
    ["an endless chunked body", "endless", []],
    ["a body dripping 100 bytes/s (the client gives up)", "drip", ["-m", "3"]],
    ["wrong bytes for the digest", "wrong", []],
  ])("%s: the client gets a cut response or an error, never the whole", async (_label, fault, args) => {
    const started = Date.now();
    const res = await curlThrough(proxy, blobUrl(fault), args, 30_000);
    expect(refusedOrCut(res, blob.length), `${fault}: status ${res.status}, exit ${res.exitCode}, ${res.body.length} bytes`).toBe(true);
    expect(Date.now() - started).toBeLessThan(20_000);
    if (res.status >= 400) expect(JSON.parse(res.body.toString())).toHaveProperty("errors");
  });

  it("a 200 MB manifest is refused with a registry error; one of unknown length is cut at 4 MiB", async () => {
    const huge = await curlThrough(proxy, `https://bad.test/v2/lab/huge-manifest/manifests/${digestFor("huge-manifest")}`, ["-H", "Accept: */*"]);
    expect(huge.status).toBe(502);
    expect(JSON.parse(huge.body.toString()).errors[0].code).toBe("UNAVAILABLE");
    const endless = await curlThrough(proxy, `https://bad.test/v2/lab/endless-manifest/manifests/${digestFor("endless-manifest")}`, ["-H", "Accept: */*"]);
    expect(refusedOrCut(endless, 5 * 1024 * 1024)).toBe(true);
    expect(endless.body.length).toBeLessThanOrEqual(4 * 1024 * 1024);
  });

  it("a redirect loop gets 502, by digest and by tag", async () => {
    const byDigest = await curlThrough(proxy, blobUrl("loop"));
    expect(byDigest.status).toBe(502);
    const byTag = await curlThrough(proxy, "https://bad.test/v2/lab/loop/manifests/latest");
    expect(byTag.status).toBe(502);
    expect(JSON.parse(byTag.body.toString()).errors[0].code).toBe("UNAVAILABLE");
  });

  it("a TLS handshake that never completes gets a registry error within the connect timeout", async () => {
    const started = Date.now();
    const res = await curlThrough(proxy, blobUrl("any", "down.test"));
    expect(res.status).toBe(502);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it("afterwards: the process is alive, no temp file is left, and none of those bodies is cached", async () => {
    expect((await fetch(`${proxy.proxyUrl}/healthz`)).status).toBe(200);
    const tmp = path.join(proxy.dataDir, "tmp");
    await waitFor(() => readdirSync(tmp).length === 0, 15_000, "temp files to go");
    for (const fault of ["truncated", "reset", "hang", "endless", "drip", "wrong", "huge-manifest", "endless-manifest", "loop"]) {
      const hex = digestFor(fault).slice(7);
      expect(existsSync(path.join(proxy.dataDir, "blobs", "sha256", hex.slice(0, 2), hex)), fault).toBe(false);
    }
    expect(proxy.logs.some((l) => l.msg === "download failed; nothing cached" && String((l.err as { message?: string })?.message).includes("no client is waiting"))).toBe(true);
    expect(proxy.logs.some((l) => l.msg === "download failed; nothing cached" && String((l.err as { message?: string })?.message).includes("the size cap"))).toBe(true);
  });
});
