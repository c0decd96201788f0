import { randomBytes } from "node:crypto";
import { readdirSync } from "node:fs";
import { connect, type Socket } from "node:net";
import path from "node:path";
import { connect as tlsConnect } from "node:tls";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { blobFile } from "./harness/cache-files.js";
import { curlThrough, skopeoPull } from "./harness/clients.js";
import { TestEnvironment, type PushedImage } from "./harness/environment.js";
import type { RegcacheProcess } from "./harness/regcache-process.js";
import { missingTools } from "./harness/tools.js";

const exec = promisify(execFile);
const missing = missingTools("docker-registry", "skopeo", "openssl", "curl");

/** Sends raw bytes to the proxy port and returns whatever comes back before the connection closes. */
function raw(port: number, payload: Buffer | string, waitMs = 2000): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    let received = "";
    socket.on("data", (d) => (received += d.toString("latin1")));
    socket.on("error", () => undefined);
    socket.on("close", () => resolve(received));
    socket.on("connect", () => socket.write(payload));
    setTimeout(() => {
      socket.destroy();
      resolve(received);
    }, waitMs);
  });
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(path.join(dir, e.name)) : [path.join(dir, e.name)]));
}

describe.skipIf(missing.length > 0)("hostile input: the proxy refuses cleanly and keeps serving", () => {
  let env: TestEnvironment;
  let proxy: RegcacheProcess;
  let image: PushedImage;
  let layer: string;

  beforeAll(async () => {
    env = new TestEnvironment("hostile");
    await env.start();
    image = await env.pushImage("team/app", "v1", [100_000]);
    layer = image.layerDigests[0]!;
    proxy = env.regcache("hostile", ["--deny-private-addresses"]);
    await proxy.start();
    expect((await skopeoPull(proxy, image.ref, env.path("warm"))).ok).toBe(true);
  });
  afterAll(async () => env?.cleanup());

  const jsonError = (body: Buffer): string => (JSON.parse(body.toString()) as { errors: { code: string }[] }).errors[0]!.code;

  it("refuses path traversal in digests, encoded or not, and writes nothing outside the data dir", async () => {
    const before = filesUnder(proxy.dataDir).sort();
    for (const p of ["/v2/team/app/blobs/sha256:..%2f..%2f..%2fetc%2fpasswd", "/v2/team/app/blobs/sha256:%2e%2e%2f%2e%2e", "/v2/team/app/manifests/sha256:../../x", `/v2/team/app/blobs/${layer}%00`]) {
      const res = await curlThrough(proxy, `https://quay.test${p}`, ["--path-as-is"]);
      expect(res.status, p).toBe(400);
      expect(["DIGEST_INVALID", "NAME_INVALID", "TAG_INVALID"]).toContain(jsonError(res.body));
    }
    const traversal = await curlThrough(proxy, "https://quay.test/v2/../../../etc/passwd", ["--path-as-is"]);
    expect(traversal.status).toBe(400);
    expect(jsonError(traversal.body)).toBe("NAME_INVALID");
    expect(traversal.body.toString()).not.toContain("root:");
    expect(filesUnder(proxy.dataDir).sort()).toEqual(before);
  });

  /** curl straight to the registry (not through regcache), as the upstream answers a client itself. */
  const curlDirect = async (p: string, args: string[] = []): Promise<{ status: number; contentType: string }> => {
    const { stdout } = await exec("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code} %{content_type}", "--noproxy", "*", "--path-as-is", "--cacert", env.pki.caCert, ...args, `https://127.0.0.1:${env.registry.port}${p}`]).catch((err: { stdout: string }) => err);
    const [status, contentType] = stdout.split(" ");
    return { status: Number(status), contentType: contentType ?? "" };
  };

  it("forwards digests, tags and names it cannot key: the client gets the registry's own answer, and nothing is cached", async () => {
    const before = filesUnder(proxy.dataDir).filter((f) => f.includes("/blobs/")).sort();
    for (const p of [`/v2/team/app/blobs/sha256:${"a".repeat(65)}`, `/v2/team/app/blobs/sha512:${"a".repeat(64)}`, `/v2/team/app/manifests/sha384:${"a".repeat(96)}`, `/v2/team/app/manifests/${"t".repeat(200)}`, "/v2/team/app/manifests/.INVALID_MANIFEST_NAME", `/v2/Team/app/blobs/${layer}`]) {
      const through = await curlThrough(proxy, `https://quay.test${p}`);
      expect(through.status, p.slice(0, 80)).toBe((await curlDirect(p)).status);
      expect(through.headers["x-cache"], p.slice(0, 80)).toBe("BYPASS");
    }
    expect(filesUnder(proxy.dataDir).filter((f) => f.includes("/blobs/")).sort()).toEqual(before);
  });

  it("refuses, with the reason, a repository name over 255 characters and a request target over 4096", async () => {
    const long = await curlThrough(proxy, `https://quay.test/v2/${"n".repeat(300)}/manifests/latest`);
    expect(long.status).toBe(400);
    expect(JSON.parse(long.body.toString())).toEqual({ errors: [{ code: "NAME_INVALID", message: "refused, not forwarded: the repository name is 300 characters long, over the 255 the distribution spec allows" }] });
    expect((await curlThrough(proxy, `https://quay.test/v2/team/app/manifests/${"x".repeat(5000)}`)).status).toBe(414);
    const hugeHeader = await curlThrough(proxy, `https://quay.test/v2/team/app/blobs/${layer}`, ["-H", `X-Junk: ${"j".repeat(40_000)}`]);
    expect(hugeHeader.status === 431 || hugeHeader.status === 0).toBe(true);
  });

  it("a Range it does not answer from the cache (invalid, several, another unit, past the end) gets the registry's own answer", async () => {
    const whole = (await curlThrough(proxy, `https://quay.test/v2/team/app/blobs/${layer}`)).body;
    expect(whole.length).toBe(readFileSync(blobFile(proxy, layer)).length);
    for (const range of ["bytes=abc", "bytes=5-1", "bytes=0-1,4-5", "items=0-5", `bytes=${"9".repeat(40)}-`, "bytes=99999999-"]) {
      const through = await curlThrough(proxy, `https://quay.test/v2/team/app/blobs/${layer}`, ["-H", `Range: ${range}`]);
      const direct = await curlDirect(`/v2/team/app/blobs/${layer}`, ["-H", `Range: ${range}`]);
      expect(through.status, range).toBe(direct.status);
      // A multipart answer's boundary is random: the type before it must match.
      expect((through.headers["content-type"] ?? "").split(";")[0], range).toBe(direct.contentType.split(";")[0]);
      expect(through.status, range).not.toBe(200);
    }
  });

  it("answers garbage on the proxy port with 400 and closes only that connection", async () => {
    expect(await raw(proxy.port, randomBytes(2048))).toMatch(/^HTTP\/1\.1 400/);
    expect(await raw(proxy.port, "CONNECT ::::: HTTP/1.1\r\nHost: x\r\n\r\n")).toMatch(/^HTTP\/1\.1 400/);
    expect(await raw(proxy.port, "CONNECT quay.test HTTP/1.1\r\n\r\n")).toMatch(/^HTTP\/1\.1 400/);
    expect(await raw(proxy.port, `GET /${"a".repeat(70_000)} HTTP/1.1\r\n\r\n`)).toMatch(/^HTTP\/1\.1 4\d\d/);
  });

  it("survives random bytes after CONNECT and inside TLS", async () => {
    const pipelined = await raw(proxy.port, Buffer.concat([Buffer.from("CONNECT quay.test:443 HTTP/1.1\r\nHost: quay.test:443\r\n\r\n"), randomBytes(4096)]));
    expect(pipelined).not.toContain("HTTP/1.1 5");
    const afterConnect = await new Promise<string>((resolve) => {
      const socket = connect(proxy.port, "127.0.0.1", () => socket.write("CONNECT quay.test:443 HTTP/1.1\r\nHost: quay.test:443\r\n\r\n"));
      let got = "";
      socket.on("error", () => undefined);
      socket.on("data", (d) => {
        if (got === "") socket.write(randomBytes(4096));
        got += d.toString("latin1");
      });
      socket.on("close", () => resolve(got));
      setTimeout(() => {
        socket.destroy();
        resolve(got);
      }, 3000);
    });
    expect(afterConnect).toMatch(/^HTTP\/1\.1 200/);
    expect(afterConnect).not.toContain(" 500 ");
    const insideTls = await new Promise<string>((resolve) => {
      const socket: Socket = connect(proxy.port, "127.0.0.1", () => socket.write("CONNECT quay.test:443 HTTP/1.1\r\nHost: quay.test:443\r\n\r\n"));
      socket.once("data", () => {
        const tls = tlsConnect({ socket, servername: "quay.test", ca: readFileSync(proxy.caFile) }, () => tls.write(randomBytes(8192)));
        let got = "";
        tls.on("data", (d) => (got += d.toString("latin1")));
        tls.on("error", () => resolve(got));
        tls.on("close", () => resolve(got));
        setTimeout(() => {
          tls.destroy();
          resolve(got);
        }, 3000);
      });
    });
    expect(insideTls === "" || /^HTTP\/1\.1 400/.test(insideTls)).toBe(true);
  });

  it("refuses the metadata address and, with --deny-private-addresses, names that resolve to private addresses", async () => {
    expect(await raw(proxy.port, "CONNECT 169.254.169.254:443 HTTP/1.1\r\nHost: 169.254.169.254:443\r\n\r\n")).toMatch(/^HTTP\/1\.1 403/);
    expect(await raw(proxy.port, "CONNECT [fe80::1]:443 HTTP/1.1\r\n\r\n")).toMatch(/^HTTP\/1\.1 403/);
    const resolved = await curlThrough(proxy, "https://localhost/v2/team/app/manifests/v1");
    expect(resolved.status).toBe(403);
    expect(jsonError(resolved.body)).toBe("DENIED");
    const tunnelProxy = env.regcache("hostile-tunnel", ["--deny-private-addresses", "--no-intercept", "localhost"]);
    await tunnelProxy.start();
    const tunnelled = await raw(tunnelProxy.port, "CONNECT localhost:443 HTTP/1.1\r\n\r\n");
    expect(tunnelled).toMatch(/^HTTP\/1\.1 403/);
    expect(tunnelled).toContain("private");
    await tunnelProxy.stop();
  });

  it("keeps serving a normal pull while 1000 idle and half-open connections are held", async () => {
    const sockets: Socket[] = [];
    for (let i = 0; i < 1000; i++) {
      const socket = connect(proxy.port, "127.0.0.1");
      socket.on("error", () => undefined);
      if (i % 2 === 0) socket.on("connect", () => socket.write("CONNECT quay.test:443 HTTP/1.1\r\nHost: quay"));
      sockets.push(socket);
    }
    await new Promise((r) => setTimeout(r, 500));
    try {
      const result = await skopeoPull(proxy, image.ref, env.path("under-load"));
      expect(result.ok, result.stderr).toBe(true);
    } finally {
      for (const s of sockets) s.destroy();
    }
  });

  it("is still alive and serving after everything above", async () => {
    const res = await curlThrough(proxy, `https://quay.test/v2/team/app/blobs/${layer}`);
    expect(res.status).toBe(200);
    expect(res.headers["x-cache"]).toBe("HIT");
    expect(proxy.logs.filter((l) => l.msg === "error escaped every handler; exiting for a clean restart")).toEqual([]);
    // Signal 0 checks the process exists; it throws if the proxy exited.
    expect(process.kill(proxy.pid!, 0)).toBe(true);
  });
});
