import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { HostPort } from "../config/parse.js";
import { RegcacheError, systemReason } from "../errors.js";
import type { Logger } from "../log/logger.js";
import { endpointListener, sendJson, type EndpointRoute, type OwnEndpoints } from "./own-endpoints.js";

/** What --admin-listen takes off the proxy port: the figures and the cache admin API. */
const ADMIN_PATHS = /^\/(?:$|api\/stats$|metrics$|api\/cache(?:\/|$))/;

/**
 * --admin-listen: the stats page, /api/stats, /metrics and the cache admin API on a port of their
 * own (with /healthz and /readyz). Who may reach what is then a matter of ports, which a
 * NetworkPolicy or a firewall can say: the proxy port for the nodes, this one for monitoring.
 */
export async function startAdminServer(listen: HostPort, endpoints: OwnEndpoints, logger: Logger): Promise<Server> {
  const server = createServer({ requestTimeout: 30_000, headersTimeout: 15_000 }, endpointListener(endpoints, logger));
  await new Promise<void>((resolve, reject) => {
    const failed = (err: Error): void => reject(new RegcacheError("LISTEN", `cannot listen on --admin-listen ${listen.host}:${listen.port}: ${systemReason(err)}`, { cause: err }));
    server.once("error", failed);
    server.listen(listen.port, listen.host, () => {
      server.off("error", failed);
      resolve();
    });
  });
  return server;
}

/** On the proxy port while --admin-listen is set: its paths answer 404, saying where they went. */
export function movedToAdminRoute(adminAddress: () => string): EndpointRoute {
  return (req: IncomingMessage, res: ServerResponse): boolean => {
    const path = (req.url ?? "/").split("?")[0]!;
    if (!ADMIN_PATHS.test(path)) return false;
    sendJson(res, 404, { error: `${path} is served on --admin-listen (${adminAddress()}), not on the proxy port` });
    return true;
  };
}
