import { createServer, STATUS_CODES, type IncomingMessage, type Server } from "node:http";
import type { Duplex } from "node:stream";
import type { Logger } from "../log/logger.js";
import { registryErrorBody } from "../oci/error-body.js";
import { errorAnswer } from "../registry/errors.js";
import type { Dialer } from "../upstream/dialer.js";
import { classifyUpstreamError } from "../upstream/upstream-error.js";
import { decideConnect, parseConnectTarget, type ConnectPolicy } from "./connect-policy.js";
import type { MitmInterceptor } from "./mitm-interceptor.js";
import { endpointListener, type OwnEndpoints } from "./own-endpoints.js";
import type { Lifecycle } from "./lifecycle.js";
import type { ProxyAuth } from "./proxy-auth.js";
import { openTunnel } from "./tunnel.js";

export interface FrontServerDeps {
  policy: ConnectPolicy;
  lifecycle: Lifecycle;
  proxyAuth?: ProxyAuth;
  maxConnections: number;
  interceptor: MitmInterceptor;
  endpoints: OwnEndpoints;
  dialer: Dialer;
  connectTimeout: number;
  logger: Logger;
  /** Told of every CONNECT that is not intercepted (stats). */
  onNotIntercepted?: (host: string, action: "tunnel" | "deny") => void;
}

/** Request heads larger than this are refused: registry requests carry a token and a few headers. */
const MAX_HEADER_BYTES = 32 * 1024;
/**
 * A CONNECT socket with no traffic either way for this long is closed: it frees
 * half-open and idle connections (slowloris) while containerd's own limit is 5 minutes without bytes.
 */
const TUNNEL_IDLE_MS = 120_000;

/**
 * The public port: CONNECT goes through policy (deny, tunnel or intercept),
 * origin-form requests reach regcache's own endpoints.
 */
export function createFrontServer(deps: FrontServerDeps): Server {
  const server = createServer({ maxHeaderSize: MAX_HEADER_BYTES, requestTimeout: 30_000, headersTimeout: 15_000 });
  server.maxConnections = deps.maxConnections;
  server.on("connect", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    authorizeConnect(deps, req, socket).then(
      (ok) => ok && onConnect(deps, req, socket, head),
      () => socket.destroy(),
    );
  });
  server.on("request", endpointListener(deps.endpoints, deps.logger));
  server.on("clientError", (_err, socket: Duplex) => {
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    socket.destroy();
  });
  return server;
}

/** With --proxy-auth, a CONNECT without valid Proxy-Authorization gets 407. */
async function authorizeConnect(deps: FrontServerDeps, req: IncomingMessage, socket: Duplex): Promise<boolean> {
  socket.on("error", () => socket.destroy());
  if (!deps.proxyAuth) return true;
  if (await deps.proxyAuth.check(req.headers["proxy-authorization"])) return true;
  deps.logger.warn({ target: req.url?.slice(0, 200), client: req.socket.remoteAddress, status: 407 }, "CONNECT refused: proxy authentication required");
  const body = JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message: "proxy authentication required" }] });
  socket.end(`HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="regcache"\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  return false;
}

function onConnect(deps: FrontServerDeps, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  const raw = req.socket;
  raw.setTimeout(TUNNEL_IDLE_MS, () => raw.destroy());
  deps.lifecycle.trackTunnel(raw);
  const decision = decideConnect(req.url ?? "", deps.policy);
  const client = req.socket.remoteAddress;
  switch (decision.action) {
    case "deny":
      deps.logger.info({ target: req.url?.slice(0, 200), client, status: decision.status, reason: decision.reason }, "CONNECT refused");
      deps.onNotIntercepted?.(parseConnectTarget(req.url ?? "")?.host ?? "(malformed)", "deny");
      refuseConnect(socket, decision.status, decision.reason);
      return;
    case "tunnel":
      // Uncached traffic the operator chose (--no-intercept, name constraints): visible, not silent.
      deps.logger.info({ host: decision.host, port: decision.port, client }, "CONNECT tunnelled");
      deps.onNotIntercepted?.(decision.host, "tunnel");
      openTunnel(socket, head, decision.host, decision.port, deps.dialer, deps.connectTimeout).catch((err: Error) => {
        deps.logger.warn({ host: decision.host, port: decision.port, client, err: err.message }, "tunnel failed");
        refuseConnect(socket, errorAnswer(classifyUpstreamError(err, decision.host)).status, err.message);
      });
      return;
    case "intercept":
      deps.interceptor.intercept(req, socket, head, decision.host);
      return;
  }
}

/** A CONNECT is answered on the raw socket (there is no response object for it), in the registry error format. */
function refuseConnect(socket: Duplex, status: number, reason: string): void {
  const body = registryErrorBody(status === 403 ? "DENIED" : "UNAVAILABLE", reason);
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}
