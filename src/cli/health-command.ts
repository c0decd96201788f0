import { get } from "node:http";
import { isIP } from "node:net";
import { Command, Option } from "commander";
import { DEFAULTS } from "../config/config.js";
import { parseHostPort, type HostPort } from "../config/parse.js";

/** Under the image's HEALTHCHECK --timeout (5 s), so that a hung proxy is reported in our one line, not as Docker's timeout. */
const PROBE_TIMEOUT_MS = 4_000;

export interface HealthResult {
  healthy: boolean;
  /** The one line `regcache health` prints (Docker keeps it in the container's health log). */
  line: string;
}

/** Where a proxy listening on `listen` is reached from the same host: a wildcard address is probed on loopback of its family. */
export function probeTarget(listen: string, what = "--listen"): HostPort {
  const { host, port } = parseHostPort(listen, what);
  // The URL parser normalises spellings such as 0:0:0:0:0:0:0:0 or 0.0.0 to [::] and 0.0.0.0.
  const normalised = new URL(`http://${isIP(host) === 6 ? `[${host}]` : host}`).hostname;
  if (normalised === "0.0.0.0") return { host: "127.0.0.1", port };
  if (normalised === "[::]") return { host: "::1", port };
  return { host, port };
}

/** GETs /healthz (or /readyz) of the proxy that listens on `listen`; never rejects. */
export async function checkHealth(listen: string, ready: boolean): Promise<HealthResult> {
  const path = ready ? "/readyz" : "/healthz";
  let target: HostPort;
  try {
    target = probeTarget(listen);
  } catch (err) {
    return { healthy: false, line: `unhealthy: ${(err as Error).message}` };
  }
  const url = `http://${isIP(target.host) === 6 ? `[${target.host}]` : target.host}:${target.port}${path}`;
  return new Promise((resolve) => {
    const req = get({ host: target.host, port: target.port, path, timeout: PROBE_TIMEOUT_MS, agent: false }, (res) => {
      res.resume();
      const status = res.statusCode ?? 0;
      const healthy = status >= 200 && status < 300;
      resolve({ healthy, line: `${healthy ? "healthy" : "unhealthy"}: ${url} answered ${status}` });
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${PROBE_TIMEOUT_MS} ms`)));
    req.on("error", (err) => resolve({ healthy: false, line: `unhealthy: ${url}: ${err.message}` }));
  });
}

export function healthCommand(): Command {
  return new Command("health")
    .description("probe a regcache on this host (exit 0 healthy, 1 not): GET /healthz, or /readyz with --ready")
    .addOption(new Option("--listen <host:port>", "the address the proxy listens on, as given to serve").env("REGCACHE_LISTEN").default(DEFAULTS.listen))
    .option("--ready", "probe readiness (/readyz) instead of liveness (/healthz)")
    .action(async (opts: { listen: string; ready?: boolean }) => {
      const result = await checkHealth(opts.listen, opts.ready === true);
      process.stdout.write(`${result.line}\n`);
      // Docker reserves exit status 2: a bad --listen is "unhealthy" (1), not main's usage error.
      process.exitCode = result.healthy ? 0 : 1;
    });
}
