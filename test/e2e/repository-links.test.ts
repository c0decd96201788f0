import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { corruptBlobsInLayout, curlThrough, skopeoPull, skopeoPullDirect, skopeoPush, skopeoPushThrough, type ProxyEnv } from "./harness/clients.js";
import { TestEnvironment, type PushedImage } from "./harness/environment.js";
import { writeOciImage } from "./harness/oci-image.js";
import { freePort } from "./harness/ports.js";
import type { RegcacheProcess } from "./harness/regcache-process.js";
import { TestRegistry } from "./harness/registry.js";
import { TokenServer } from "./harness/token-server.js";
import { missingTools } from "./harness/tools.js";

const exec = promisify(execFile);
const missing = missingTools("docker-registry", "skopeo", "openssl", "curl");

const ALICE = "alice:s3cret-pass";
const OTHER_REGISTRY = "open.test";

/**
 * One registry with token auth (anonymous may pull public/*, alice everything), a second,
 * anonymous registry as open.test, and one regcache in front of both.
 */
describe.skipIf(missing.length > 0)("knowing a digest is not permission: cached content is served only where upstream has it", () => {
  let env: TestEnvironment;
  let tokens: TokenServer;
  let other: TestRegistry;
  let proxy: RegcacheProcess;
  let client: ProxyEnv;
  let secret: PushedImage;
  let small: PushedImage;
  let smallLayout: string;

  beforeAll(async () => {
    const tokenPort = await freePort();
    env = new TestEnvironment("links", { tokenRealm: `https://127.0.0.1:${tokenPort}/token` });
    tokens = new TokenServer(env.pki, { alice: "s3cret-pass" });
    await tokens.start(tokenPort);
    await env.start();
    other = new TestRegistry({ dir: env.path("other-registry"), pki: env.pki });
    await other.start();
    secret = await env.pushImage("corp/secret", "v1", [2_000_000, 300_000], 1, ALICE);
    small = await env.pushImage("public/small", "v1", [150_000], 1, ALICE);
    smallLayout = env.path("layouts", "public_small-v1-1");
    proxy = env.regcache("links", ["--resolve", `${OTHER_REGISTRY}:443=127.0.0.1:${other.port}`]);
    await proxy.start();
    // Go never proxies loopback: skopeo reaches the token realm (127.0.0.1) directly and must trust it too.
    const bundle = env.path("trust.pem");
    writeFileSync(bundle, readFileSync(proxy.caFile, "utf8") + readFileSync(env.pki.caCert, "utf8"));
    client = { proxyUrl: proxy.proxyUrl, caFile: bundle };
    expect((await skopeoPull(client, secret.ref, env.path("alice-pull"), { creds: ALICE })).ok).toBe(true);
    expect((await skopeoPull(client, small.ref, env.path("anon-pull"))).ok).toBe(true);
  });
  afterAll(async () => {
    await tokens?.stop();
    await other?.stop();
    await env?.cleanup();
  });

  /** A token from the realm directly, as a client gets one: anonymous, or with credentials. */
  const token = async (scope: string, creds?: string): Promise<string> => {
    const url = `https://127.0.0.1:${tokens.port}/token?service=regcache-test-registry&scope=${encodeURIComponent(scope)}`;
    const { stdout } = await exec("curl", ["-s", "--cacert", env.pki.caCert, ...(creds ? ["-u", creds] : []), url]);
    return (JSON.parse(stdout) as { token: string }).token;
  };
  /** What the registry answers this request directly, and what regcache answers it. */
  const bothWays = async (url: string, headers: string[], method = "GET") => {
    const args = ["-X", method, ...(method === "HEAD" ? ["-I"] : []), ...headers.flatMap((h) => ["-H", h])];
    const directArgs = ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", env.pki.caCert, "--connect-to", `quay.test:443:127.0.0.1:${env.registry.port}`, "--connect-to", `${OTHER_REGISTRY}:443:127.0.0.1:${other.port}`, ...args, url];
    const direct = Number((await exec("curl", directArgs).catch((e: { stdout: string }) => e)).stdout);
    const through = await curlThrough(client, url, args);
    return { direct, through };
  };

  it("an anonymous or wrong-credential client gets no private layer or manifest, by any repository or registry", async () => {
    const layer = secret.layerDigests[0]!;
    const manifest = secret.manifests[0]!.digest;
    const anonymousPublic = `Authorization: Bearer ${await token("repository:public/small:pull")}`;
    const anonymousOther = `Authorization: Bearer ${await token("repository:corp/other:pull")}`;
    const cases: [string, string[]][] = [
      [`https://quay.test/v2/public/small/blobs/${layer}`, [anonymousPublic]],
      [`https://quay.test/v2/public/small/manifests/${manifest}`, [anonymousPublic, "Accept: application/vnd.oci.image.manifest.v1+json"]],
      [`https://quay.test/v2/corp/other/blobs/${layer}`, [anonymousOther]],
      [`https://quay.test/v2/corp/secret/blobs/${layer}`, []],
      [`https://quay.test/v2/corp/secret/blobs/${layer}`, ["Authorization: Basic YWxpY2U6d3Jvbmc="]],
      [`https://quay.test/v2/public/small/blobs/${layer}`, []],
      [`https://${OTHER_REGISTRY}/v2/lib/pub/blobs/${layer}`, []],
      [`https://${OTHER_REGISTRY}/v2/lib/pub/manifests/${manifest}`, ["Accept: application/vnd.oci.image.manifest.v1+json"]],
    ];
    for (const [url, headers] of cases) {
      for (const method of ["GET", "HEAD"]) {
        const { direct, through } = await bothWays(url, headers, method);
        expect([401, 403, 404], `${method} ${url} directly`).toContain(direct);
        expect(through.status, `${method} ${url} ${headers.join(" ").slice(0, 40)} through regcache`).toBe(direct);
        expect(through.body.includes(Buffer.from("corp/secret")) && through.status === 200).toBe(false);
      }
    }
  });

  it("a HEAD for a blob cached from another repository answers what upstream answers (404), and a push there uploads it", async () => {
    const layer = small.layerDigests[0]!;
    const auth = `Authorization: Bearer ${await token("repository:corp/copy:pull,push", ALICE)}`;
    const { direct, through } = await bothWays(`https://quay.test/v2/corp/copy/blobs/${layer}`, [auth], "HEAD");
    expect(direct).toBe(404);
    expect(through.status).toBe(404);
    // alice's access to corp/copy is confirmed by a pull first: that must not make other repositories' blobs appear there.
    const earlier = await env.pushImage("corp/copy", "v0", [50_000], 1, ALICE);
    expect((await skopeoPull(client, earlier.ref, env.path("copy-v0"), { creds: ALICE })).ok).toBe(true);
    const pushed = await skopeoPushThrough(client, smallLayout, "v1", "quay.test/corp/copy:v1", { creds: ALICE });
    expect(pushed.ok, pushed.stderr).toBe(true);
    const back = env.path("copy-direct");
    expect((await skopeoPullDirect(`${env.registry.url}/corp/copy:v1`, back, env.pki.certDir, { creds: ALICE })).ok).toBe(true);
    expect(corruptBlobsInLayout(back)).toEqual({ checked: small.allDigests.length, corrupt: [] });
  });

  it("a push to a second registry succeeds with every blob cached from the first", async () => {
    // A pull from the same repository first makes it known to regcache as public.
    const earlierLayout = env.path("layouts", "earlier");
    writeOciImage(earlierLayout, "v0", [40_000], 1);
    await skopeoPush(earlierLayout, "v0", other.url, "lib/copied", env.pki.certDir);
    expect((await skopeoPull(client, `${OTHER_REGISTRY}/lib/copied:v0`, env.path("copied-v0"))).ok).toBe(true);
    const pushed = await skopeoPushThrough(client, smallLayout, "v1", `${OTHER_REGISTRY}/lib/copied:v1`);
    expect(pushed.ok, pushed.stderr).toBe(true);
    const back = env.path("other-direct");
    expect((await skopeoPullDirect(`${other.url}/lib/copied:v1`, back, env.pki.certDir)).ok).toBe(true);
    expect(corruptBlobsInLayout(back)).toEqual({ checked: small.allDigests.length, corrupt: [] });
  });

  it("an image whose layers are cached from another repository pulls with no blob GETs and one HEAD per blob", async () => {
    await skopeoPush(smallLayout, "v1", env.registry.url, "public/mirror", env.pki.certDir, ALICE);
    env.registry.clearLog();
    const pulled = await skopeoPull(client, "quay.test/public/mirror:v1", env.path("mirror"));
    expect(pulled.ok, pulled.stderr).toBe(true);
    expect(env.registry.blobGets()).toEqual([]);
    const blobHeads = env.registry.accessLog.filter((e) => e.method === "HEAD" && e.path.includes("/public/mirror/blobs/"));
    const blobs = small.allDigests.filter((d) => !small.manifests.some((m) => m.digest === d) && d !== small.topDigest);
    for (const digest of blobs) expect(blobHeads.filter((e) => e.path.endsWith(digest)).length, digest).toBeLessThanOrEqual(1);
    expect(corruptBlobsInLayout(env.path("mirror")).corrupt).toEqual([]);
  });

  it("with the upstreams down, a cached digest is never served in a repository it is not linked to", async () => {
    await env.registry.stop();
    await other.stop();
    try {
      const layer = secret.layerDigests[0]!;
      for (const url of [`https://quay.test/v2/public/small/blobs/${layer}`, `https://quay.test/v2/corp/other/blobs/${layer}`, `https://${OTHER_REGISTRY}/v2/lib/pub/blobs/${layer}`]) {
        for (const method of ["GET", "HEAD"]) {
          const res = await curlThrough(client, url, ["-X", method, ...(method === "HEAD" ? ["-I"] : [])]);
          expect(res.status, `${method} ${url}`).toBe(503);
        }
      }
      // Linked content still follows the offline policy: anonymous gets the private layer refused...
      expect((await curlThrough(client, `https://quay.test/v2/corp/secret/blobs/${layer}`)).status).toBe(401);
      // ...and the public repository's own layers stay pullable.
      const offline = await skopeoPull(client, small.ref, env.path("offline"));
      expect(offline.ok, offline.stderr).toBe(true);
    } finally {
      await env.registry.start();
      await other.start();
    }
  });
});
