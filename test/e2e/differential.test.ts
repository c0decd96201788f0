import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createSecureContext } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ALLOWED_DIFFERENCES } from "./harness/allowed-differences.js";
import { buildCorpus, type CorpusRepositories, type ShapeAuth } from "./harness/differential-corpus.js";
import { describeDifference, DifferentialRun, type RegistryUnderTest, type ShapeResult } from "./harness/differential.js";
import { HUB_CDN_HOST, HubShapedRegistry } from "./harness/hub-registry.js";
import { freePort } from "./harness/ports.js";
import { exchange, tlsDirect } from "./harness/raw-http.js";
import { RegcacheProcess } from "./harness/regcache-process.js";
import { TestRegistry } from "./harness/registry.js";
import { buildTestContent, pushBlob, pushManifest, pushTestContent, OCI_MANIFEST, type PushTarget } from "./harness/registry-push.js";
import { createTestPki, type TestPki } from "./harness/test-ca.js";
import { TokenServer } from "./harness/token-server.js";
import { missingTools } from "./harness/tools.js";

const missing = missingTools("docker-registry", "openssl");

const USER = "alice";
const PASSWORD = "s3cret-pass";
const REPOS: CorpusRepositories = { main: "corp/app", open: "public/app", other: "corp/other", absent: "corp/absent" };
/** Requests in flight at once: enough to interleave registries and join fills, few enough for 2 cores. */
const CONCURRENCY = 6;

/**
 * The differential suite: every request shape of the corpus is sent to each test registry directly
 * and through regcache, cold and then warm, and the answers must match in status, body bytes and
 * the headers clients act on, except as a row of ALLOWED_DIFFERENCES says. The registries: Debian's
 * distribution (open), distribution with token auth, and a Docker-Hub-shaped front over the latter
 * (CDN redirects; it labels a manifest without mediaType the Docker way where distribution labels
 * it OCI). One regcache serves all three, so the same digests meet under different labels.
 */
describe.skipIf(missing.length > 0)("differential: regcache answers as the registry does", () => {
  let dir: string;
  let pki: TestPki;
  let plain: TestRegistry;
  let tokenRegistry: TestRegistry;
  let tokens: TokenServer;
  let hub: HubShapedRegistry;
  let proxy: RegcacheProcess;
  let run: DifferentialRun;
  let registries: { name: string; registry: RegistryUnderTest }[];
  /** The test user's token, for every repository of the corpus: fetched again for each pass (tokens last 300 s). */
  let bearer = "";
  const results: { pass: string; results: ShapeResult[]; ms: number }[] = [];

  /** A token from the token server: the user's (Basic), for these repositories' pull and push. */
  async function userToken(repositories: string[]): Promise<string> {
    const query = repositories.map((r) => `scope=${encodeURIComponent(`repository:${r}:pull,push`)}`).join("&");
    const socket = await tlsDirect(tokens.port, "127.0.0.1", undefined, readFileSync(pki.caCert, "utf8"));
    const basic = Buffer.from(`${USER}:${PASSWORD}`).toString("base64");
    const [answer] = await exchange(socket, [{ method: "GET", path: `/token?service=regcache-test-registry&${query}`, host: `127.0.0.1:${tokens.port}`, headers: [["Authorization", `Basic ${basic}`]] }]);
    return (JSON.parse(answer!.body.toString()) as { token: string }).token;
  }

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "regcache-differential-"));
    pki = createTestPki(path.join(dir, "pki"), ["quay.test", "token.test", "hub.test", HUB_CDN_HOST, "localhost", "127.0.0.1"]);
    const tokenPort = await freePort();
    tokens = new TokenServer(pki, { [USER]: PASSWORD });
    await tokens.start(tokenPort);
    plain = new TestRegistry({ dir: path.join(dir, "plain"), pki });
    tokenRegistry = new TestRegistry({ dir: path.join(dir, "token"), pki, tokenRealm: `https://127.0.0.1:${tokenPort}/token` });
    await Promise.all([plain.start(), tokenRegistry.start()]);
    hub = new HubShapedRegistry(pki, tokenRegistry.port, (repository) => userToken([repository]));
    await hub.start();

    const ca = readFileSync(pki.caCert, "utf8");
    const content = buildTestContent();
    const otherContent = buildTestContent();
    bearer = `Bearer ${await userToken(Object.values(REPOS))}`;
    const targets: PushTarget[] = [
      { port: plain.port, host: "quay.test", ca },
      { port: tokenRegistry.port, host: "token.test", ca, authorization: bearer },
    ];
    for (const target of targets) {
      await pushTestContent(target, REPOS.main, content);
      await pushTestContent(target, REPOS.open, content);
      await pushBlob(target, REPOS.other, otherContent.config);
      await pushBlob(target, REPOS.other, otherContent.layer);
      await pushManifest(target, REPOS.other, "oci", OCI_MANIFEST, otherContent.oci);
    }

    proxy = new RegcacheProcess(path.join(dir, "data"), path.join(dir, "certs"), [
      ...["quay.test", plain.port, "token.test", tokenRegistry.port, "hub.test", hub.port, HUB_CDN_HOST, hub.port].flatMap((v, i, a) => (i % 2 === 0 ? ["--resolve", `${v}:443=127.0.0.1:${a[i + 1]}`] : [])),
      "--upstream-ca",
      pki.caCert,
    ]);
    await proxy.start();

    const corpus = buildCorpus(content, REPOS);
    const credentials = (tokenDefault: boolean) => (auth: ShapeAuth): string | undefined => {
      switch (auth) {
        case "default":
          return tokenDefault ? bearer : undefined;
        case "anonymous":
          return undefined;
        case "bearer":
          return bearer;
        case "bearer-garbage":
          return "Bearer not-a-token";
        case "basic":
          return `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString("base64")}`;
        case "basic-wrong":
          return `Basic ${Buffer.from(`${USER}:wrong`).toString("base64")}`;
      }
    };
    registries = [
      { name: "distribution", registry: { host: "quay.test", port: plain.port, corpus, authorization: credentials(false) } },
      { name: "token-auth", registry: { host: "token.test", port: tokenRegistry.port, corpus, authorization: credentials(true) } },
      { name: "hub-shaped", registry: { host: "hub.test", port: hub.port, corpus, authorization: credentials(true) } },
    ];
    // Reused contexts: one TLS configuration per side, as a real client keeps one.
    run = new DifferentialRun({ testCa: createSecureContext({ ca }), proxyPort: proxy.port, proxyCa: createSecureContext({ ca: readFileSync(proxy.caFile, "utf8") }), ports: { [HUB_CDN_HOST]: hub.port } });
  });

  afterAll(async () => {
    await proxy?.stop("SIGKILL");
    await hub?.stop();
    await tokens?.stop();
    await plain?.stop();
    await tokenRegistry?.stop();
    if (dir && process.env.REGCACHE_KEEP_TEST_DIRS !== "1") rmSync(dir, { recursive: true, force: true });
  });

  for (const pass of ["cold", "warm"]) {
    it(`${pass}: every shape answers as the registry does, or as an allowed difference says`, async () => {
      bearer = `Bearer ${await userToken(Object.values(REPOS))}`;
      const started = Date.now();
      const passResults = await run.run(registries, CONCURRENCY);
      results.push({ pass, results: passResults, ms: Date.now() - started });
      for (const { name, registry } of registries) {
        expect(passResults.filter((r) => r.registry === name)).toHaveLength(registry.corpus.length);
        expect(registry.corpus.length).toBeGreaterThanOrEqual(300);
      }
      const different = passResults.filter((r) => r.verdict.kind === "different");
      expect(different.map(describeDifference).join("\n"), `${different.length} shapes differ`).toBe("");
    });
  }

  it("the allowed differences it used are rows of the table, and regcache served from its cache when warm", () => {
    const rows = new Set(ALLOWED_DIFFERENCES.map((r) => r.id));
    for (const { results: passResults } of results) {
      for (const r of passResults) if (r.verdict.kind === "allowed") for (const row of r.verdict.rows) expect(rows).toContain(row);
    }
    const hits = proxy.requestLogs().filter((l) => l.cache === "HIT").length;
    expect(hits).toBeGreaterThan(100);
    const summary = results.map(({ pass, results: r, ms }) => {
      const allowed = new Map<string, number>();
      for (const x of r) if (x.verdict.kind === "allowed") for (const row of x.verdict.rows) allowed.set(row, (allowed.get(row) ?? 0) + 1);
      const uncompared = r.filter((x) => x.verdict.kind !== "different" && x.verdict.uncompared.length > 0).length;
      return `${pass}: ${r.length} shapes in ${ms} ms; allowed ${JSON.stringify(Object.fromEntries(allowed))}; ${uncompared} with fields that vary by themselves`;
    });
    console.log(`differential: ${summary.join(" | ")}; ${hits} cache hits`);
  });
});
