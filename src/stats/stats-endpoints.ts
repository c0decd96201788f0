import type { IncomingMessage, ServerResponse } from "node:http";
import type { EndpointRoute } from "../proxy/own-endpoints.js";
import { sendJson } from "../proxy/own-endpoints.js";
import type { Metrics } from "./metrics.js";
import { STATS_PAGE } from "./stats-page.js";
import { statsSnapshot, type StatsSources } from "./stats-snapshot.js";

/** /, /api/stats and /metrics on the proxy port. */
export function statsRoutes(sources: StatsSources, metrics: Metrics): EndpointRoute {
  return async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    const path = (req.url ?? "/").split("?")[0];
    switch (path) {
      case "/":
        res.writeHead(200, {
          "content-type": "text/html; charset=utf-8",
          "content-length": Buffer.byteLength(STATS_PAGE),
          "cache-control": "no-store",
          "content-security-policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
          "x-content-type-options": "nosniff",
        });
        res.end(req.method === "HEAD" ? undefined : STATS_PAGE);
        return true;
      case "/api/stats":
        sendJson(res, 200, statsSnapshot(sources));
        return true;
      case "/metrics": {
        const text = await metrics.text();
        res.writeHead(200, { "content-type": metrics.registry.contentType, "content-length": Buffer.byteLength(text) });
        res.end(req.method === "HEAD" ? undefined : text);
        return true;
      }
      default:
        return false;
    }
  };
}
