import { readFileSync, writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { curlThrough, runPrefetch, skopeoPull, type ProxyEnv } from "./harness/clients.js";
import { TestEnvironment, type PushedImage } from "./harness/environment.js";
import type { RegcacheProcess } from "./harness/regcache-process.js";
import { freePort } from "./harness/ports.js";
import { TokenServer } from "./harness/token-server.js";
import { missingTools } from "./harness/tools.js";

const missing = missingTools("docker-registry", "skopeo", "openssl", "curl");

const GOOD = "alice:s3cret-pass";

describe.skipIf(missing.length > 0)("a registry with token auth (Bearer), as Docker Hub, ghcr.io and quay.io have", () => {
  let env: TestEnvironment;
  let tokens: TokenServer;
  let privateImage: PushedImage;
  let publicImage: PushedImage;

  beforeAll(async () => {
    const tokenPort = await freePort();
    env = new TestEnvironment("token-auth", { tokenRealm: `https://127.0.0.1:${tokenPort}/token` });
    tokens = new TokenServer(env.pki, { alice: "s3cret-pass" });
    await tokens.start(tokenPort);
    await env.start();
    privateImage = await env.pushImage("corp/app", "1", [120_000], 1, GOOD);
    publicImage = await env.pushImage("public/tool", "1", [80_000], 1, GOOD);
  });
  afterAll(async () => {
    await tokens?.stop();
    await env?.cleanup();
  });

  /**
   * Go clients never proxy loopback, so skopeo reaches the token realm (127.0.0.1 here; a
   * named host on 443 in real life, through regcache) directly: it trusts the token server's CA too.
   */
  const trustingTokenServer = (proxy: RegcacheProcess): ProxyEnv => {
    const bundle = env.path(`trust-${proxy.port}.pem`);
    writeFileSync(bundle, readFileSync(proxy.caFile, "utf8") + readFileSync(env.pki.caCert, "utf8"));
    return { proxyUrl: proxy.proxyUrl, caFile: bundle };
  };

  const writeCredentials = (name: string): string => {
    const file = env.path(`${name}.json`);
    writeFileSync(file, JSON.stringify({ "quay.test": { username: "alice", password: "s3cret-pass" } }));
    return file;
  };

  it("skopeo pulls a private image with credentials; anonymous and wrong ones fail, also once it is cached", async () => {
    const proxy = env.regcache("private");
    await proxy.start();
    const client = trustingTokenServer(proxy);
    const authorized = await skopeoPull(client, privateImage.ref, env.path("private-good"), { creds: GOOD });
    expect(authorized.ok, authorized.stderr).toBe(true);
    const anonymous = await skopeoPull(client, privateImage.ref, env.path("private-anon"));
    expect(anonymous.ok).toBe(false);
    expect(anonymous.stderr).toMatch(/unauthorized|authentication required/i);
    const wrong = await skopeoPull(client, privateImage.ref, env.path("private-wrong"), { creds: "alice:wrong" });
    expect(wrong.ok).toBe(false);
    expect(wrong.stderr).toMatch(/401|unauthorized/i);
    const blob = await curlThrough(proxy, `https://quay.test/v2/corp/app/blobs/${privateImage.layerDigests[0]}`);
    expect(blob.status).toBe(401);
    expect(blob.headers["www-authenticate"]).toMatch(/^Bearer realm="https:\/\/127\.0\.0\.1:\d+\/token"/);
    await proxy.stop();
  });

  it("a public repository is learnt with an anonymous token and served from the cache to anyone; a token a client sends is still checked", async () => {
    const proxy = env.regcache("public");
    await proxy.start();
    const client = trustingTokenServer(proxy);
    const first = await skopeoPull(client, publicImage.ref, env.path("public-1"));
    expect(first.ok, first.stderr).toBe(true);
    env.registry.clearLog();
    const again = await skopeoPull(client, publicImage.ref, env.path("public-2"));
    expect(again.ok, again.stderr).toBe(true);
    expect(env.registry.blobGets()).toEqual([]);
    // skopeo sends its anonymous token: the tag revalidation it makes anyway confirmed that token.
    const line = await proxy.waitForLog((l) => l.msg === "request" && l.kind === "blob" && l.cache === "HIT");
    expect(line.access).toBe("confirmed");
    expect(tokens.requests.some((r) => r.account === undefined && r.granted.includes("public/tool:pull"))).toBe(true);
    // Without any Authorization, the cached layer of a public repository is served at once.
    const anonymous = await curlThrough(proxy, `https://quay.test/v2/public/tool/blobs/${publicImage.layerDigests[0]}`);
    expect(anonymous.status).toBe(200);
    expect(anonymous.headers["x-cache"]).toBe("HIT");
    expect((await proxy.waitForLog((l) => l.msg === "request" && l.method === "GET" && l.kind === "blob" && l.access === "public")).cache).toBe("HIT");
    // A token upstream refuses is refused, as upstream would, whatever anyone may read.
    const forged = await curlThrough(proxy, `https://quay.test/v2/public/tool/blobs/${publicImage.layerDigests[0]}`, ["-H", "Authorization: Bearer not-a-token"]);
    expect(forged.status).toBe(401);
    await proxy.stop();
  });

  it("serve --credentials fetches tokens as the proxy-held user, so nodes pull private images without pull secrets", async () => {
    const proxy = env.regcache("held", ["--credentials", writeCredentials("held")]);
    await proxy.start();
    const before = tokens.requests.length;
    const result = await skopeoPull(proxy, privateImage.ref, env.path("held-anon"));
    expect(result.ok, result.stderr).toBe(true);
    expect(tokens.requests.slice(before).some((r) => r.account === "alice" && r.granted.includes("corp/app:pull"))).toBe(true);
    await proxy.stop();
  });

  it("prefetch --credentials caches a private image behind token auth", async () => {
    // prefetch sends every request through regcache, the token realm's port included.
    const proxy = env.regcache("prefetch", ["--allow-port", "443", "--allow-port", String(tokens.port)]);
    await proxy.start();
    const prefetched = await runPrefetch(["--proxy", proxy.proxyUrl, "--credentials", writeCredentials("prefetch"), privateImage.ref]);
    expect(prefetched.code, prefetched.stdout + prefetched.stderr).toBe(0);
    env.registry.clearLog();
    const pulled = await skopeoPull(trustingTokenServer(proxy), privateImage.ref, env.path("prefetched"), { creds: GOOD });
    expect(pulled.ok, pulled.stderr).toBe(true);
    expect(env.registry.blobGets()).toEqual([]);
    await proxy.stop();
  });
});
