import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { curlThrough, TestContainerd, type ProxyEnv } from "./harness/clients.js";
import { TestEnvironment, type PushedImage } from "./harness/environment.js";
import { freePort, waitFor } from "./harness/ports.js";
import type { LogLine, RegcacheProcess } from "./harness/regcache-process.js";
import { TOKEN_SERVICE, TokenServer } from "./harness/token-server.js";
import { containerdUnavailable, missingTools } from "./harness/tools.js";

const exec = promisify(execFile);

const missing = missingTools("docker-registry", "skopeo", "openssl", "curl");

const GOOD = "alice:s3cret-pass";
const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";

/** The OAuth2 password grant as distribution's oauth.md describes it (and containerd sends it). */
function passwordGrant(scope: string): string {
  return new URLSearchParams({ grant_type: "password", username: "alice", password: "s3cret-pass", service: TOKEN_SERVICE, scope, client_id: "regcache-e2e" }).toString();
}

/** A JWT's claims (the signature is not checked). */
function jwtClaims(token: string): { sub: string; aud: string; access: { type: string; name: string; actions: string[] }[] } {
  return JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString()) as ReturnType<typeof jwtClaims>;
}

/**
 * containerd (core/remotes/docker/authorizer.go, doBearerAuth) fetches a token with credentials
 * by the OAuth2 POST (grant_type=password, client_id=containerd-client) and falls back to GET with
 * Basic only when the POST answers 400, 401, 404 or 405. The token server here refuses Basic on GET,
 * so a credentialed pull works only by the POST.
 */
describe.skipIf(missing.length > 0)("a token server that takes credentials only by OAuth2 POST, as containerd sends them", () => {
  let env: TestEnvironment;
  let tokens: TokenServer;
  let privateImage: PushedImage;

  beforeAll(async () => {
    const tokenPort = await freePort();
    env = new TestEnvironment("token-post", { tokenRealm: `https://127.0.0.1:${tokenPort}/token` });
    tokens = new TokenServer(env.pki, { alice: "s3cret-pass" });
    await tokens.start(tokenPort);
    await env.start();
    // skopeo pushes with GET + Basic tokens; only afterwards does the server insist on the POST.
    privateImage = await env.pushImage("corp/app", "1", [150_000, 40_000], 1, GOOD);
    tokens.requirePostForCredentials = true;
  });
  afterAll(async () => {
    await tokens?.stop();
    await env?.cleanup();
  });

  /** ctr reaches the token realm (loopback) directly, not through regcache: it trusts the test CA too. */
  const trustingTokenServer = (proxy: RegcacheProcess): ProxyEnv => {
    const bundle = env.path(`trust-${proxy.port}.pem`);
    writeFileSync(bundle, readFileSync(proxy.caFile, "utf8") + readFileSync(env.pki.caCert, "utf8"));
    return { proxyUrl: proxy.proxyUrl, caFile: bundle };
  };

  /** The request log lines for blobs of this image that arrived after `mark`, once every blob has one. */
  const blobLinesAfter = async (proxy: RegcacheProcess, mark: number, blobs: string[]): Promise<LogLine[]> => {
    const lines = () => proxy.logs.slice(mark).filter((l) => l.msg === "request" && l.kind === "blob");
    await waitFor(() => blobs.every((d) => lines().some((l) => l.digest === d || String(l.path).endsWith(d))), 5_000, "a request line for every blob");
    return lines();
  };

  describe.skipIf(containerdUnavailable())("containerd", () => {
    it("ctr pull --user gets its token by POST and pulls the private image through regcache; a second containerd is served from the cache; anonymous fails", async () => {
      const proxy = env.regcache("ctr");
      await proxy.start();
      const client = trustingTokenServer(proxy);
      const blobs = privateImage.allDigests.filter((d) => d !== privateImage.topDigest);

      const first = new TestContainerd(env.path("containerd-1"));
      await first.start();
      try {
        const before = tokens.requests.length;
        env.registry.clearLog();
        const pulled = await first.pull(client, privateImage.ref, { allPlatforms: true, user: GOOD });
        expect(pulled.ok, pulled.stderr + proxy.rawOutput.join("\n")).toBe(true);
        const seen = tokens.requests.slice(before);
        expect(seen.filter((r) => r.method === "POST" && r.status === 200)).toContainEqual(
          expect.objectContaining({ credentials: "password", account: "alice", clientId: "containerd-client", granted: ["corp/app:pull"] }),
        );
        // No fallback was needed: ctr never sent its credentials by GET.
        expect(seen.filter((r) => r.credentials === "basic")).toEqual([]);
        expect((await first.contentDigests()).sort()).toEqual([...privateImage.allDigests].sort());
        expect((await first.verifyContent()).corrupt).toEqual([]);
        for (const layer of privateImage.layerDigests) expect(env.registry.blobGets(layer).length, layer).toBeGreaterThanOrEqual(1);
      } finally {
        await first.stop();
      }

      const second = new TestContainerd(env.path("containerd-2"));
      await second.start();
      try {
        const before = tokens.requests.length;
        env.registry.clearLog();
        const mark = proxy.logs.length;
        const again = await second.pull(client, privateImage.ref, { allPlatforms: true, user: GOOD });
        expect(again.ok, again.stderr + proxy.rawOutput.join("\n")).toBe(true);
        expect(tokens.requests.slice(before).some((r) => r.method === "POST" && r.account === "alice" && r.status === 200)).toBe(true);
        expect(env.registry.blobGets()).toEqual([]);
        const lines = await blobLinesAfter(proxy, mark, blobs);
        expect(lines.map((l) => [l.digest ?? l.path, l.status, l.cache])).toEqual(lines.map((l) => [l.digest ?? l.path, 200, "HIT"]));
        expect((await second.contentDigests()).sort()).toEqual([...privateImage.allDigests].sort());
        expect((await second.verifyContent()).corrupt).toEqual([]);
      } finally {
        await second.stop();
      }

      // The cache is warm now: without credentials ctr still gets nothing.
      const anonymous = new TestContainerd(env.path("containerd-anon"));
      await anonymous.start();
      try {
        const refused = await anonymous.pull(client, privateImage.ref, { allPlatforms: true });
        expect(refused.ok).toBe(false);
        expect(refused.stderr).toMatch(/pull access denied|401|unauthorized/i);
        expect(await anonymous.contentDigests()).toEqual([]);
      } finally {
        await anonymous.stop();
      }
      await proxy.stop();
    });
  });

  it("a token POST sent through regcache (CONNECT to the realm's port) gets the same answer as a direct one, and the proxy lives on", async () => {
    const proxy = env.regcache("post-through", ["--allow-port", "443", "--allow-port", String(tokens.port)]);
    await proxy.start();
    const scope = "repository:corp/app:pull";

    // Directly: the server refuses credentials by GET and takes the form by POST.
    const direct = async (extra: string[]) => {
      const { stdout } = await exec("curl", ["-s", "--noproxy", "*", "--cacert", env.pki.caCert, "-w", "\n%{http_code}", ...extra, tokens.realm], { timeout: 30_000 });
      const at = stdout.lastIndexOf("\n");
      return { status: Number(stdout.slice(at + 1)), body: stdout.slice(0, at) };
    };
    const basicGet = await direct(["-u", GOOD, "-G", "--data-urlencode", `scope=${scope}`, "--data-urlencode", `service=${TOKEN_SERVICE}`]);
    expect(basicGet.status).toBe(401);
    const directPost = await direct(["-d", passwordGrant(scope)]);
    expect(directPost.status, directPost.body).toBe(200);
    const expected = JSON.parse(directPost.body) as Record<string, unknown>;

    const before = tokens.requests.length;
    const proxied = await curlThrough(proxy, tokens.realm, ["-d", passwordGrant(scope)], 30_000);
    expect(proxied.connectStatus).toBe(200);
    expect(proxied.status, proxied.body.toString() + proxy.rawOutput.join("\n")).toBe(200);
    const answer = JSON.parse(proxied.body.toString()) as Record<string, unknown>;
    expect(Object.keys(answer).sort()).toEqual(Object.keys(expected).sort());
    expect(answer).toMatchObject({ scope: expected.scope, expires_in: expected.expires_in });
    expect(typeof answer.access_token).toBe("string");
    const claims = jwtClaims(answer.access_token as string);
    expect(claims).toMatchObject({ sub: "alice", aud: TOKEN_SERVICE, access: jwtClaims(expected.access_token as string).access });
    expect(tokens.requests.slice(before)).toEqual([expect.objectContaining({ method: "POST", credentials: "password", account: "alice", status: 200, granted: ["corp/app:pull"] })]);
    const line = await proxy.waitForLog((l) => l.msg === "request" && l.method === "POST" && l.path === "/token");
    expect(line.status).toBe(200);

    // The token got through regcache works through regcache.
    const manifest = await curlThrough(proxy, `https://quay.test/v2/corp/app/manifests/${privateImage.topDigest}`, ["-H", `Authorization: Bearer ${String(answer.access_token)}`, "-H", `Accept: ${OCI_MANIFEST}`]);
    expect(manifest.status).toBe(200);
    expect(manifest.headers["docker-content-digest"]).toBe(privateImage.topDigest);

    const { stdout: health } = await exec("curl", ["-s", "--noproxy", "*", "-o", "/dev/null", "-w", "%{http_code}", `${proxy.proxyUrl}/healthz`], { timeout: 10_000 });
    expect(health).toBe("200");
    expect(proxy.rawOutput.join("\n")).not.toMatch(/TypeError|uncaught/i);
    await proxy.stop();
  });
});
