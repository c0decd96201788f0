import { createHash, randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { curlThrough } from "./harness/clients.js";
import { TestEnvironment } from "./harness/environment.js";
import { FakeUpstream } from "./harness/fake-upstream.js";
import type { RegcacheProcess } from "./harness/regcache-process.js";
import { missingTools } from "./harness/tools.js";

const missing = missingTools("openssl", "curl");

describe.skipIf(missing.length > 0)("blobs answered with a redirect to a CDN", () => {
  let env: TestEnvironment;
  let registry: FakeUpstream;
  let cdn: FakeUpstream;
  let proxy: RegcacheProcess;
  const layer = randomBytes(300_000);
  const digest = `sha256:${createHash("sha256").update(layer).digest("hex")}`;

  beforeAll(async () => {
    env = new TestEnvironment("redirects");
    cdn = new FakeUpstream(env.pki, (req, res) => {
      if (!req.url?.startsWith("/blobs/signed?")) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": layer.length });
      res.end(layer);
    });
    await cdn.start();
    registry = new FakeUpstream(env.pki, (_req, res) => {
      // Like Docker Hub: a 307 to a signed, expiring URL on another host.
      res.writeHead(307, { location: `https://cdn.test/blobs/signed?sig=${randomBytes(6).toString("hex")}&expires=${Date.now() + 60_000}` });
      res.end();
    });
    await registry.start();
    proxy = env.regcache("redirects", [...registry.resolveArg("flaky.test"), ...cdn.resolveArg("cdn.test")]);
    await proxy.start();
  });
  afterAll(async () => {
    await registry?.stop();
    await cdn?.stop();
    await env?.cleanup();
  });

  it("follows the redirect server-side, answers 200 with the bytes, and drops Authorization for the CDN", async () => {
    const url = `https://flaky.test/v2/app/blobs/${digest}`;
    const res = await curlThrough(proxy, url, ["-H", "Authorization: Bearer registry-token-abc"]);
    expect(res.status).toBe(200);
    expect(res.headers.location).toBeUndefined();
    expect(res.headers["docker-content-digest"]).toBe(digest);
    expect(res.body.equals(layer)).toBe(true);
    const registryGets = registry.requests.filter((r) => r.method === "GET");
    expect(registryGets[0]!.headers.authorization).toBe("Bearer registry-token-abc");
    const cdnGets = cdn.requests.filter((r) => r.method === "GET");
    expect(cdnGets.length).toBe(1);
    expect(cdnGets[0]!.headers.authorization).toBeUndefined();
  });

  it("stores the blob under its digest, not the signed URL: the next request is a hit", async () => {
    const before = cdn.requests.length;
    const res = await curlThrough(proxy, `https://flaky.test/v2/app/blobs/${digest}`, ["-H", "Authorization: Bearer registry-token-abc"]);
    expect(res.status).toBe(200);
    expect(res.headers["x-cache"]).toBe("HIT");
    expect(res.body.equals(layer)).toBe(true);
    expect(cdn.requests.length).toBe(before);
  });
});
