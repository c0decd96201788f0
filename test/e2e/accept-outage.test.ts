import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { curlThrough, type CurlResult } from "./harness/clients.js";
import { TestEnvironment } from "./harness/environment.js";
import { FakeUpstream } from "./harness/fake-upstream.js";
import { exchange, tlsThroughProxy } from "./harness/raw-http.js";
import type { RegcacheProcess } from "./harness/regcache-process.js";
import { missingTools } from "./harness/tools.js";

const missing = missingTools("openssl", "curl");

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const GOOD = "alice:s3cret-pass";
const sha256 = (b: Buffer): string => `sha256:${createHash("sha256").update(b).digest("hex")}`;
const manifest = (mediaType: string | undefined, seed: string): Buffer =>
  Buffer.from(JSON.stringify({ schemaVersion: 2, ...(mediaType ? { mediaType } : {}), config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: `sha256:${seed.repeat(64)}`, size: 2 }, layers: [] }));

/** How the fake registry answers: as a registry does, every manifest request with this status, or a 503 whose body never ends. */
type Mode = "up" | 500 | 503 | 429 | "stalled-503";

/**
 * A manifest cached from repository lab/a, asked for by digest with an Accept that does not name
 * its type (curl's *\/*, none, another manifest type): upstream's answer while it gives one; while it
 * cannot (5xx, 429, stopped), the cached bytes, but only in lab/a, to a client the offline policy
 * allows, and never in another repository or on another registry host, under any policy.
 */
describe.skipIf(missing.length > 0)("a cached manifest asked for by digest with an Accept that does not name its type", () => {
  let env: TestEnvironment;
  let upstream: FakeUpstream;
  let proxy: RegcacheProcess;
  let permissive: RegcacheProcess;
  let mode: Mode = "up";
  const declared = manifest(OCI_MANIFEST, "a");
  // Declares no mediaType: its type in lab/a is the label upstream gave it there.
  const undeclared = manifest(undefined, "b");
  const secret = manifest(OCI_MANIFEST, "c");
  const repositories: Record<string, Buffer[]> = { "lab/a": [declared, undeclared], "lab/private": [secret] };

  function registry(req: IncomingMessage, res: ServerResponse): void {
    const json = (status: number, code: string, headers: Record<string, string> = {}): void =>
      void res.writeHead(status, { "content-type": "application/json", ...headers }).end(JSON.stringify({ errors: [{ code, message: `fake registry: ${code}` }] }));
    if (req.url === "/v2/") return json(200, "OK");
    if (typeof mode === "number") return json(mode, mode === 429 ? "TOOMANYREQUESTS" : "UNAVAILABLE", mode === 429 ? { "retry-after": "1" } : {});
    if (mode === "stalled-503" && req.method === "GET") {
      res.writeHead(503, { "content-type": "text/html", "content-length": "100000" });
      res.write("<html>");
      return;
    }
    if (mode === "stalled-503") return json(503, "UNAVAILABLE");
    const [, name, digest] = /^\/v2\/(.+)\/manifests\/(sha256:[0-9a-f]{64})$/.exec(req.url ?? "") ?? [];
    if (name === "lab/private" && req.headers.authorization !== `Basic ${Buffer.from(GOOD).toString("base64")}`) return json(401, "UNAUTHORIZED", { "www-authenticate": 'Basic realm="fake"' });
    const body = (repositories[name ?? ""] ?? []).find((b) => sha256(b) === digest);
    if (!body) return json(404, "MANIFEST_UNKNOWN");
    res.writeHead(200, { "content-type": OCI_MANIFEST, "docker-content-digest": sha256(body), "content-length": String(body.length) }).end(req.method === "HEAD" ? undefined : body);
  }

  const url = (body: Buffer, repository = "lab/a", host = "flaky.test"): string => `https://${host}/v2/${repository}/manifests/${sha256(body)}`;
  const wildcard = ["-H", "Accept: */*"];

  function expectManifest(res: CurlResult, body: Buffer, label: string): void {
    expect(res.status, label).toBe(200);
    expect(sha256(res.body), label).toBe(sha256(body));
    expect(res.headers["content-type"], label).toBe(OCI_MANIFEST);
    expect(res.headers["docker-content-digest"], label).toBe(sha256(body));
  }

  /** A registry-style refusal that carries none of the manifest's bytes. */
  function expectRefused(res: CurlResult, status: number, code: string, label: string): void {
    expect(res.status, label).toBe(status);
    expect(JSON.parse(res.body.toString()).errors[0].code, label).toBe(code);
    expect(res.headers["docker-content-digest"], label).toBeUndefined();
  }

  beforeAll(async () => {
    env = new TestEnvironment("accept-outage");
    upstream = new FakeUpstream(env.pki, registry);
    await upstream.start();
    // A long body timeout: a stalled error page must not be what makes the cached answer come.
    const args = [...upstream.resolveArg("flaky.test"), ...upstream.resolveArg("bad.test"), "--failure-threshold", "1000", "--body-timeout", "10m"];
    proxy = env.regcache("public", args);
    permissive = env.regcache("all", [...args, "--offline-access", "all"]);
    for (const p of [proxy, permissive]) {
      await p.start();
      for (const body of [declared, undeclared]) expect((await curlThrough(p, url(body), ["-H", `Accept: ${OCI_MANIFEST}`])).status).toBe(200);
      expect((await curlThrough(p, url(secret, "lab/private"), ["-H", `Accept: ${OCI_MANIFEST}`, "-u", GOOD])).status).toBe(200);
    }
  });
  afterAll(async () => {
    await upstream?.stop();
    await env?.cleanup();
  });

  it("while upstream answers, its answer is relayed: the manifest in lab/a, 404 in lab/b, 401 with its challenge to an anonymous client of a private repository", async () => {
    mode = "up";
    const own = await curlThrough(proxy, url(declared), wildcard);
    expectManifest(own, declared, "lab/a");
    expect(own.headers["x-cache"]).toBe("BYPASS");
    expectRefused(await curlThrough(proxy, url(declared, "lab/b"), wildcard), 404, "MANIFEST_UNKNOWN", "lab/b");
    const anonymous = await curlThrough(proxy, url(secret, "lab/private"), wildcard);
    expectRefused(anonymous, 401, "UNAUTHORIZED", "private");
    expect(anonymous.headers["www-authenticate"]).toBe('Basic realm="fake"');
  });

  for (const status of [500, 503, 429] as const) {
    it(`upstream answering ${status}: lab/a's cached bytes as their type, to the clients the policy allows; lab/b and another registry get a registry error, under any policy`, async () => {
      mode = status;
      for (const p of [proxy, permissive]) {
        for (const accept of ["Accept: */*", "Accept:", "Accept: application/*", "Accept: application/vnd.docker.distribution.manifest.v2+json"]) {
          for (const body of [declared, undeclared]) {
            const res = await curlThrough(p, url(body), ["-H", accept]);
            expectManifest(res, body, `${accept} ${body === declared ? "declared" : "undeclared"}`);
            expect(res.headers["x-cache"]).toBe("HIT");
          }
        }
        for (const [label, target] of [["lab/b", url(declared, "lab/b")], ["lab/b, a type not known there", url(undeclared, "lab/b")], ["another registry", url(declared, "lab/a", "bad.test")]]) {
          expectRefused(await curlThrough(p, target!, wildcard), 503, "UNAVAILABLE", label!);
          const head = await curlThrough(p, target!, ["-I", ...wildcard]);
          expect(head.status, `HEAD ${label}`).toBe(503);
          expect(head.headers["docker-content-digest"]).toBeUndefined();
        }
      }
      // --offline-access public: the confirmed client only; all: anyone.
      for (const method of [[], ["-I"]]) {
        expect((await curlThrough(proxy, url(secret, "lab/private"), [...method, ...wildcard, "-u", GOOD])).status).toBe(200);
        for (const creds of [[], ["-u", "alice:wrong"]]) {
          const refused = await curlThrough(proxy, url(secret, "lab/private"), [...method, ...wildcard, ...creds]);
          expect(refused.status, `${method} ${creds}`).toBe(401);
          expect(refused.headers["www-authenticate"]).toBe('Basic realm="fake"');
          if (method.length === 0) expectRefused(refused, 401, "UNAUTHORIZED", `${creds}`);
          expect((await curlThrough(permissive, url(secret, "lab/private"), [...method, ...wildcard, ...creds])).status).toBe(200);
        }
      }
    });
  }

  it("a HEAD gets the headers of a cached HIT whose Accept names the type", async () => {
    mode = 503;
    const named = await curlThrough(proxy, url(declared), ["-I", "-H", `Accept: ${OCI_MANIFEST}`]);
    const { date: _d1, ...expected } = named.headers;
    for (const accept of ["Accept: */*", "Accept:"]) {
      const { date: _d2, ...got } = (await curlThrough(proxy, url(declared), ["-I", "-H", accept])).headers;
      expect(got, accept).toEqual(expected);
    }
    expect(expected["content-length"]).toBe(String(declared.length));
  });

  it("an error page whose body never ends does not hold the cached answer back", async () => {
    mode = "stalled-503";
    expectManifest(await curlThrough(proxy, url(declared), wildcard, 60_000), declared, "lab/a");
    expectRefused(await curlThrough(proxy, url(declared, "lab/b"), wildcard, 60_000), 503, "UNAVAILABLE", "lab/b");
    await proxy.waitForLog((l) => l.msg === "request" && l.repository === "lab/a" && l.upstreamStatus === 503 && l.cache === "HIT");
  });

  it("upstream stopped: concurrent and pipelined requests each get their own answer, logged once each, without credentials", async () => {
    await upstream.stop();
    const logged = proxy.requestLogs().length;
    const targets = Array.from({ length: 24 }, (_, i) => [[url(declared), declared], [url(undeclared), undeclared], [url(declared, "lab/b"), undefined], [url(secret, "lab/private"), secret]][i % 4]!);
    const answers = await Promise.all(targets.map(([target, _body], i) => curlThrough(proxy, target as string, [...wildcard, ...(i % 8 === 3 ? ["-u", GOOD] : [])])));
    answers.forEach((res, i) => {
      const body = targets[i]![1] as Buffer | undefined;
      if (i % 8 === 7) expectRefused(res, 401, "UNAUTHORIZED", `anonymous ${i}`);
      else if (body) expectManifest(res, body, `${i}`);
      else expectRefused(res, 503, "UNAVAILABLE", `lab/b ${i}`);
    });
    const socket = await tlsThroughProxy(proxy.port, "flaky.test:443", "flaky.test", readFileSync(proxy.caFile, "utf8"));
    const path = (body: Buffer, repository = "lab/a"): string => new URL(url(body, repository)).pathname;
    const pipelined = await exchange(socket, [
      { method: "GET", path: path(declared), host: "flaky.test", headers: [["Accept", "*/*"]] },
      { method: "GET", path: path(declared, "lab/b"), host: "flaky.test", headers: [["Accept", "*/*"]] },
      { method: "HEAD", path: path(undeclared), host: "flaky.test", headers: [["Accept", "*/*"]] },
      { method: "GET", path: path(undeclared), host: "flaky.test" },
    ]);
    expect(pipelined.map((r) => r.status)).toEqual([200, 503, 200, 200]);
    expect(sha256(pipelined[0]!.body)).toBe(sha256(declared));
    expect(pipelined[1]!.body.includes(sha256(declared))).toBe(false);
    expect(pipelined[2]!.headers["content-length"]).toBe(String(undeclared.length));
    expect(sha256(pipelined[3]!.body)).toBe(sha256(undeclared));
    const lines = (await proxy.waitForRequestLogs(logged + targets.length + 4)).slice(logged);
    expect(lines).toHaveLength(targets.length + 4);
    expect(lines.filter((l) => l.repository === "lab/a" && l.cache === "HIT" && l.upstreamStatus === 0 && l.forwarded === undefined)).toHaveLength(12 + 3);
    expect(lines.filter((l) => l.repository === "lab/b" && l.status === 503 && l.access === "unlinked-unavailable")).toHaveLength(6 + 1);
    expect(proxy.rawOutput.join("\n")).not.toMatch(new RegExp(`s3cret|${Buffer.from(GOOD).toString("base64")}`));
    expect((await fetch(`${proxy.proxyUrl}/healthz`)).status).toBe(200);
  });
});
