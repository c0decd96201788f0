import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { checkHealth, probeTarget } from "../../../src/cli/health-command.js";

describe("regcache health", () => {
  let server: Server | undefined;
  afterEach(async () => {
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined));
    server = undefined;
  });

  /** A stand-in proxy on loopback answering each path with the given status; returns its port. */
  async function serve(statuses: Record<string, number>, host = "127.0.0.1"): Promise<number> {
    server = createServer((req, res) => {
      res.writeHead(statuses[req.url ?? ""] ?? 404).end("{}");
    });
    await new Promise<void>((resolve) => server!.listen(0, host, resolve));
    return (server.address() as AddressInfo).port;
  }

  it("probes a wildcard listen address on loopback of the same family, and any other address as given", () => {
    expect(probeTarget("0.0.0.0:3999")).toEqual({ host: "127.0.0.1", port: 3999 });
    expect(probeTarget("[::]:3128")).toEqual({ host: "::1", port: 3128 });
    expect(probeTarget("[0:0:0:0:0:0:0:0]:3128")).toEqual({ host: "::1", port: 3128 });
    expect(probeTarget("10.1.2.3:3128")).toEqual({ host: "10.1.2.3", port: 3128 });
    expect(probeTarget("[fd00::1]:3128")).toEqual({ host: "fd00::1", port: 3128 });
    expect(probeTarget("localhost:3128")).toEqual({ host: "localhost", port: 3128 });
  });

  it("is healthy when /healthz answers 2xx, and probes /readyz with --ready", async () => {
    const port = await serve({ "/healthz": 200, "/readyz": 503 });
    expect(await checkHealth(`0.0.0.0:${port}`, false)).toEqual({ healthy: true, line: `healthy: http://127.0.0.1:${port}/healthz answered 200` });
    expect(await checkHealth(`0.0.0.0:${port}`, true)).toEqual({ healthy: false, line: `unhealthy: http://127.0.0.1:${port}/readyz answered 503` });
  });

  it("reaches an IPv6 wildcard listener on ::1", async () => {
    const port = await serve({ "/healthz": 200 }, "::1");
    expect(await checkHealth(`[::]:${port}`, false)).toEqual({ healthy: true, line: `healthy: http://[::1]:${port}/healthz answered 200` });
  });

  it("is unhealthy, in one line, when nothing listens or the address is malformed", async () => {
    const port = await serve({});
    await new Promise((resolve) => server!.close(resolve));
    server = undefined;
    const refused = await checkHealth(`127.0.0.1:${port}`, false);
    expect(refused.healthy).toBe(false);
    expect(refused.line).toMatch(new RegExp(`^unhealthy: http://127\\.0\\.0\\.1:${port}/healthz: .*ECONNREFUSED`));
    expect(await checkHealth("nowhere", false)).toEqual({ healthy: false, line: 'unhealthy: --listen must be HOST:PORT, got "nowhere"' });
    expect(await checkHealth("0.0.0.0:0", false)).toMatchObject({ healthy: false });
  });

  it("gives up on a proxy that accepts but never answers, before Docker's 5 s timeout", async () => {
    server = createServer(() => undefined);
    await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    const started = Date.now();
    const hung = await checkHealth(`127.0.0.1:${port}`, false);
    expect(hung).toEqual({ healthy: false, line: `unhealthy: http://127.0.0.1:${port}/healthz: no answer within 4000 ms` });
    expect(Date.now() - started).toBeLessThan(5_000);
  }, 10_000);
});
