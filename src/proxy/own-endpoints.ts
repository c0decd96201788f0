import type { IncomingMessage, RequestListener, ServerResponse } from "node:http";
import type { Logger } from "../log/logger.js";

export interface Readiness {
  /** Null when ready, else why not. */
  notReadyReason(): Promise<string | null>;
  /** Parts the replica serves without, named on a ready answer (a shared tier that is down). */
  degraded?(): Record<string, string> | undefined;
}

export interface EndpointRoute {
  (req: IncomingMessage, res: ServerResponse): Promise<boolean> | boolean;
}

/**
 * Origin-form requests to the proxy port itself. Extra routes (stats, metrics,
 * setup script) are added by their own modules through `extraRoutes`, which see GET and HEAD
 * only; `anyMethodRoutes` (the cache admin API) see every method and check it themselves.
 */
export class OwnEndpoints {
  constructor(
    private readonly caPem: string,
    private readonly readiness: Readiness,
    private readonly extraRoutes: EndpointRoute[] = [],
    private readonly anyMethodRoutes: EndpointRoute[] = [],
  ) {}

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? "/";
    if (!url.startsWith("/")) {
      sendJson(res, 400, { error: "regcache proxies HTTPS registries through CONNECT; plain HTTP forwarding is not supported" });
      return;
    }
    const path = url.split("?")[0];
    for (const route of this.anyMethodRoutes) {
      if (await route(req, res)) return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      sendJson(res, 405, { error: `${req.method} is not supported here` }, { allow: "GET, HEAD" });
      return;
    }
    switch (path) {
      case "/healthz":
        sendJson(res, 200, { status: "alive" });
        return;
      case "/readyz": {
        const reason = await this.readiness.notReadyReason();
        const degraded = this.readiness.degraded?.();
        sendJson(res, reason ? 503 : 200, reason ? { status: "not ready", reason } : degraded ? { status: "ready", degraded } : { status: "ready" });
        return;
      }
      case "/ca.crt":
        res.writeHead(200, {
          "content-type": "application/x-x509-ca-cert",
          "content-length": Buffer.byteLength(this.caPem),
          "content-disposition": 'attachment; filename="regcache-ca.crt"',
        });
        res.end(req.method === "HEAD" ? undefined : this.caPem);
        return;
    }
    for (const route of this.extraRoutes) {
      if (await route(req, res)) return;
    }
    sendJson(res, 404, { error: `no such endpoint: ${path}` });
  }
}

/** The request listener of a port that serves own endpoints: each answered, logged at debug, a failure a 500. */
export function endpointListener(endpoints: OwnEndpoints, logger: Logger): RequestListener {
  return (req, res) => {
    const started = performance.now();
    res.on("close", () => logger.debug({ method: req.method, path: req.url?.slice(0, 200), status: res.statusCode, durationMs: Math.round(performance.now() - started), client: req.socket.remoteAddress }, "endpoint request"));
    endpoints.handle(req, res).catch((err: unknown) => {
      logger.error({ err }, "endpoint failed");
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  };
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text), "cache-control": "no-store", ...headers });
  res.end(res.req.method === "HEAD" ? undefined : text);
}
