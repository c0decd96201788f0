import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { curlThrough } from "./harness/clients.js";
import { TestEnvironment } from "./harness/environment.js";
import { RawTlsUpstream, answerThenDropTcp } from "./harness/raw-upstream.js";
import type { RegcacheProcess } from "./harness/regcache-process.js";
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
