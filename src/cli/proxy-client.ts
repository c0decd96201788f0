import { isIP } from "node:net";
import { Option } from "commander";
import { request, type Dispatcher } from "undici";
import { parseHttpUrl } from "../config/parse.js";
import { RegcacheError, systemReason } from "../errors.js";
import { probeTarget } from "./health-command.js";

/** --proxy of the commands that talk to a running regcache. */
export function proxyOption(description: string, defaultUrl = "http://127.0.0.1:3128"): Option {
  return new Option("--proxy <url>", description)
    .env("REGCACHE_PROXY")
    .default(defaultUrl)
    .argParser((value: string) => parseHttpUrl(value, "--proxy"));
}

/**
 * --proxy of the commands that read the figures or the cache admin API (`stats`, `cache`): where
 * REGCACHE_ADMIN_LISTEN is set (in the pod, beside serve), those are on that port, not the proxy's.
 */
export function figuresProxyOption(description: string, env: NodeJS.ProcessEnv = process.env): Option {
  const admin = env.REGCACHE_ADMIN_LISTEN;
  let target;
  try {
    target = admin ? probeTarget(admin, "REGCACHE_ADMIN_LISTEN") : undefined;
  } catch {
    // serve refuses a malformed value itself; here it just gives no default.
  }
  if (!target) return proxyOption(description);
  const { host, port } = target;
  return proxyOption(`${description} (default: REGCACHE_ADMIN_LISTEN's port)`, `http://${isIP(host) === 6 ? `[${host}]` : host}:${port}`);
}

export interface ProxyRequestInit {
  method?: Dispatcher.HttpMethod;
  headers?: Record<string, string>;
  /** For an answer that takes as long as the work it reports (hashing the whole cache): no timeouts. */
  untimed?: boolean;
}

/**
 * The body of `path` (GET unless `init` says otherwise) from the regcache at `proxy`; not reaching
 * it, or any answer but 200, is an error naming the URL and the answer's own `error` when it has one.
 */
export async function fetchFromProxy(proxy: string, path: string, init: ProxyRequestInit = {}): Promise<string> {
  const url = new URL(path, proxy).href;
  let status: number;
  let body: string;
  try {
    const res = await request(url, { method: init.method, headers: init.headers, ...(init.untimed ? { headersTimeout: 0, bodyTimeout: 0 } : {}) });
    status = res.statusCode;
    body = await res.body.text();
  } catch (err) {
    throw new RegcacheError("PROXY", `cannot reach regcache at ${proxy}: ${systemReason(err)}`, { cause: err });
  }
  if (status !== 200) throw new RegcacheError("PROXY", `${url} answered ${status}: ${errorMessage(body) ?? body.slice(0, 200)}`);
  return body;
}

/** The `error` of regcache's JSON error answers. */
function errorMessage(body: string): string | undefined {
  try {
    const error: unknown = (JSON.parse(body) as { error?: unknown }).error;
    return typeof error === "string" ? error : undefined;
  } catch {
    return undefined;
  }
}
