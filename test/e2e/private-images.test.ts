import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { curlThrough, runPrefetch, skopeoPull } from "./harness/clients.js";
import { TestEnvironment, type PushedImage } from "./harness/environment.js";
import { writeOciImage } from "./harness/oci-image.js";
import { skopeoPush } from "./harness/clients.js";
import type { RegcacheProcess } from "./harness/regcache-process.js";
import { GatedRelay } from "./harness/gated-relay.js";
import { waitFor } from "./harness/ports.js";
import { TestRegistry, writeHtpasswd } from "./harness/registry.js";
import { missingTools } from "./harness/tools.js";

const exec = promisify(execFile);
const missing = missingTools("docker-registry", "skopeo", "openssl", "curl", "htpasswd");

const GOOD = "alice:s3cret-pass";
const WRONG = "alice:not-the-password";

describe.skipIf(missing.length > 0)("private images stay private", () => {
  let env: TestEnvironment;
  let openRegistry: TestRegistry;
  let privateImage: PushedImage;
  let publicRef: string;
  const proxies: RegcacheProcess[] = [];

  beforeAll(async () => {
    const htpasswd = `${process.env.TMPDIR ?? "/tmp"}/regcache-htpasswd-${process.pid}`;
    writeHtpasswd(htpasswd, { alice: "s3cret-pass" });
    env = new TestEnvironment("private", { htpasswdFile: htpasswd });
    await env.start();
    privateImage = await env.pushImage("corp/secret-app", "1", [150_000], 1, GOOD);
    openRegistry = new TestRegistry({ dir: env.path("open-registry"), pki: env.pki });
    await openRegistry.start();
    const layout = env.path("open-layout");
    writeOciImage(layout, "1", [100_000]);
    await skopeoPush(layout, "1", openRegistry.url, "oss/tool", env.pki.certDir);
    publicRef = "open.test/oss/tool:1";
  });
  afterAll(async () => {
    await openRegistry?.stop();
    await env?.cleanup();
  });

  function proxyWith(name: string, args: string[]): RegcacheProcess {
    const proxy = env.regcache(name, ["--resolve", `open.test:443=127.0.0.1:${openRegistry.port}`, ...args]);
    proxies.push(proxy);
    return proxy;
  }

  it("online: after an authorized pull, anonymous and wrong-credential pulls fail; a public image pulls for anyone", async () => {
    const proxy = proxyWith("online", []);
    await proxy.start();
    const authorized = await skopeoPull(proxy, privateImage.ref, env.path("online-good"), { creds: GOOD });
    expect(authorized.ok, authorized.stderr).toBe(true);
    expect((await skopeoPull(proxy, privateImage.ref, env.path("online-anon"))).ok).toBe(false);
    expect((await skopeoPull(proxy, privateImage.ref, env.path("online-wrong"), { creds: WRONG })).ok).toBe(false);
    const byDigest = await curlThrough(proxy, `https://quay.test/v2/corp/secret-app/manifests/${privateImage.topDigest}`);
    expect(byDigest.status).toBe(401);
    expect(byDigest.headers["www-authenticate"]).toMatch(/^Basic realm=/);
    const blob = await curlThrough(proxy, `https://quay.test/v2/corp/secret-app/blobs/${privateImage.layerDigests[0]}`, ["-u", WRONG]);
    expect(blob.status).toBe(401);
    expect(blob.body.length).toBeLessThan(1000);
    expect((await skopeoPull(proxy, publicRef, env.path("online-public"))).ok).toBe(true);
    expect((await skopeoPull(proxy, publicRef, env.path("online-public-2"))).ok).toBe(true);
    await proxy.waitForLog((l) => l.msg === "request" && l.access === "public");
    await proxy.stop();
  });

  const expectations = {
    public: { good: true, anon: false, wrong: false, publicImage: true },
    all: { good: true, anon: true, wrong: true, publicImage: true },
    none: { good: false, anon: false, wrong: false, publicImage: false },
  } as const;

  for (const [policy, expected] of Object.entries(expectations)) {
    it(`offline with --offline-access ${policy}: authorized ${expected.good ? "pulls" : "fails"}, anonymous ${expected.anon ? "pulls" : "fails"}, wrong ${expected.wrong ? "pulls" : "fails"}`, async () => {
      await env.registry.start();
      await openRegistry.start();
      const proxy = proxyWith(`offline-${policy}`, ["--offline-access", policy, "--auth-ttl", "1s", "--public-ttl", "1s"]);
      await proxy.start();
      expect((await skopeoPull(proxy, privateImage.ref, env.path(`${policy}-warm`), { creds: GOOD })).ok).toBe(true);
      expect((await skopeoPull(proxy, publicRef, env.path(`${policy}-warm-public`))).ok).toBe(true);
      await env.registry.stop();
      await openRegistry.stop();
      await new Promise((r) => setTimeout(r, 1500));
      const good = await skopeoPull(proxy, privateImage.ref, env.path(`${policy}-good`), { creds: GOOD });
      expect(good.ok, good.stderr).toBe(expected.good);
      expect((await skopeoPull(proxy, privateImage.ref, env.path(`${policy}-anon`))).ok).toBe(expected.anon);
      expect((await skopeoPull(proxy, privateImage.ref, env.path(`${policy}-wrong`), { creds: WRONG })).ok).toBe(expected.wrong);
      expect((await skopeoPull(proxy, publicRef, env.path(`${policy}-public`))).ok).toBe(expected.publicImage);
      // An Accept that does not name the manifest's type is upstream's to answer, and the same policy's while upstream is down.
      const manifestUrl = `https://quay.test/v2/corp/secret-app/manifests/${privateImage.topDigest}`;
      for (const [who, creds, allowed] of [["good", ["-u", GOOD], expected.good], ["anonymous", [], expected.anon], ["wrong", ["-u", WRONG], expected.wrong]] as const) {
        const res = await curlThrough(proxy, manifestUrl, ["-H", "Accept: */*", ...creds]);
        expect(res.status === 200, `${who}: ${res.status}`).toBe(allowed);
        if (allowed) expect(`sha256:${createHash("sha256").update(res.body).digest("hex")}`).toBe(privateImage.topDigest);
        else expect(res.body.includes(privateImage.layerDigests[0]!)).toBe(false);
      }
      await proxy.stop();
    });
  }

  it("proxy-held --credentials serve nodes without pull secrets", async () => {
    await env.registry.start();
    const credentials = env.path("credentials.json");
    writeFileSync(credentials, JSON.stringify({ "quay.test": { username: "alice", password: "s3cret-pass" } }));
    const proxy = proxyWith("held-creds", ["--credentials", credentials]);
    await proxy.start();
    const result = await skopeoPull(proxy, privateImage.ref, env.path("held-anon"));
    expect(result.ok, result.stderr).toBe(true);
    await proxy.stop();
  });

  it("--proxy-auth: 407 without credentials, pulls with them", async () => {
    await env.registry.start().catch(() => undefined);
    const users = env.path("proxy-users");
    writeHtpasswd(users, { node1: "proxy-pw" });
    const proxy = proxyWith("proxy-auth", ["--proxy-auth", users]);
    await proxy.start();
    const refused = await curlThrough(proxy, "https://open.test/v2/");
    expect(refused.connectStatus).toBe(407);
    expect(refused.headers["proxy-authenticate"]).toBe('Basic realm="regcache"');
    expect((await skopeoPull(proxy, publicRef, env.path("pa-none"))).ok).toBe(false);
    const allowed = await skopeoPull({ proxyUrl: proxy.proxyUrl, caFile: proxy.caFile, proxyUser: "node1:proxy-pw" }, privateImage.ref, env.path("pa-good"), { creds: GOOD });
    expect(allowed.ok, allowed.stderr).toBe(true);
    expect((await skopeoPull({ proxyUrl: proxy.proxyUrl, caFile: proxy.caFile, proxyUser: "node1:wrong" }, publicRef, env.path("pa-wrong"))).ok).toBe(false);
    await proxy.stop();
  });

  it("prefetch --credentials caches a private image, which then pulls with no upstream blob GET; without them prefetch fails", async () => {
    await env.registry.start().catch(() => undefined);
    const credentials = env.path("prefetch-credentials.json");
    writeFileSync(credentials, JSON.stringify({ "quay.test": { username: "alice", password: "s3cret-pass" } }));
    const proxy = proxyWith("prefetch-creds", []);
    await proxy.start();
    const without = await runPrefetch(["--proxy", proxy.proxyUrl, privateImage.ref]);
    expect(without.code).toBe(1);
    expect(without.stdout).toMatch(/^failed quay\.test\/corp\/secret-app:1: .*answered 401/m);
    const withCredentials = await runPrefetch(["--proxy", proxy.proxyUrl, "--credentials", credentials, privateImage.ref]);
    expect(withCredentials.code, withCredentials.stdout + withCredentials.stderr).toBe(0);
    expect(withCredentials.stdout).toContain(`ok ${privateImage.ref} ${privateImage.topDigest}`);
    env.registry.clearLog();
    const pulled = await skopeoPull(proxy, privateImage.ref, env.path("prefetched-good"), { creds: GOOD });
    expect(pulled.ok, pulled.stderr).toBe(true);
    expect(env.registry.blobGets()).toEqual([]);
    expect((await skopeoPull(proxy, privateImage.ref, env.path("prefetched-anon"))).ok).toBe(false);
    await proxy.stop();
  });

  it("concurrent tag revalidations share one upstream HEAD per credential scope, and no answer crosses scopes", async () => {
    await env.registry.start().catch(() => undefined);
    // Between regcache and the registry: holds the registry's answers until every request is in.
    const relay = new GatedRelay(env.registry.port);
    await relay.start();
    const proxy = proxyWith("shared-revalidations", ["--resolve", `quay.test:443=127.0.0.1:${relay.port}`, "--tag-ttl", "0s"]);
    await proxy.start();
    try {
      const tagUrl = "https://quay.test/v2/corp/secret-app/manifests/1";
      const accept = ["-H", `Accept: ${privateImage.topMediaType}`];
      // The manifest is cached: an authorized answer is a revalidated HIT, not upstream's own.
      expect((await curlThrough(proxy, tagUrl, ["-u", GOOD, ...accept])).status).toBe(200);
      relay.hold();
      env.registry.clearLog();
      const clients = [GOOD, GOOD, GOOD, GOOD, undefined, undefined, undefined, WRONG, WRONG, WRONG];
      const answers = clients.map((creds) => curlThrough(proxy, tagUrl, ["-I", ...accept, ...(creds ? ["-u", creds] : [])]));
      await waitFor(async () => /^regcache_active_requests 10$/m.test(await (await fetch(`${proxy.proxyUrl}/metrics`)).text()), 30_000, "all ten HEADs in regcache");
      relay.release();
      const got = await Promise.all(answers);
      got.forEach((answer, i) => {
        if (clients[i] === GOOD) {
          expect(answer.status).toBe(200);
          expect(answer.headers["docker-content-digest"]).toBe(privateImage.topDigest);
          expect(answer.headers["x-cache"]).toBe("HIT");
        } else {
          expect(answer.status).toBe(401);
          expect(answer.headers["docker-content-digest"]).toBeUndefined();
          expect(answer.headers["www-authenticate"]).toMatch(/^Basic realm=/);
        }
      });
      // A request straight to the registry after all of them: its log line comes after theirs.
      await exec("curl", ["-s", "-o", "/dev/null", "--cacert", env.pki.caCert, "--noproxy", "*", `https://${env.registry.url}/v2/?sentinel`]);
      await waitFor(() => env.registry.accessLog.some((e) => e.path === "/v2/?sentinel"), 10_000, "the sentinel's log line");
      // One HEAD per scope: alice's credentials, anonymous, the wrong password.
      const upstreamHeads = env.registry.accessLog.filter((e) => e.method === "HEAD" && e.path === "/v2/corp/secret-app/manifests/1");
      expect(upstreamHeads.map((e) => e.status).sort()).toEqual([200, 401, 401]);
      const lines = (await proxy.waitForRequestLogs(11)).filter((l) => l.method === "HEAD");
      expect(lines).toHaveLength(10);
      expect(lines.filter((l) => l.coalesced === true)).toHaveLength(7);
    } finally {
      relay.release();
      await proxy.stop();
      await relay.stop();
    }
  });

  it("credentials never appear in any log line", async () => {
    const secrets = ["s3cret-pass", "not-the-password", "proxy-pw", Buffer.from(GOOD).toString("base64"), Buffer.from(WRONG).toString("base64"), Buffer.from("node1:proxy-pw").toString("base64")];
    let lines = 0;
    for (const proxy of proxies) {
      for (const line of proxy.rawOutput) {
        lines += 1;
        for (const secret of secrets) expect(line).not.toContain(secret);
        expect(line).not.toMatch(/Bearer [A-Za-z0-9._-]{20,}/);
      }
    }
    expect(lines).toBeGreaterThan(50);
  });
});
