import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "../log/logger.js";
import { sendRegistryError } from "../registry/errors.js";
import type { RegistryHandler } from "../registry/registry-handler.js";
import type { RegistryRequest } from "../registry/request-context.js";
import type { Lifecycle } from "./lifecycle.js";
import { parseConnectTarget } from "./connect-policy.js";

/** Registry paths are a name (at most 255) plus a digest or tag; anything far longer is abuse. */
const MAX_URL_LENGTH = 4096;

export interface RequestObserver {
  (rr: RegistryRequest, status: number, bytes: number, durationMs: number): void;
}

/**
 * Every request decrypted inside a CONNECT tunnel arrives here. Its upstream is
 * the CONNECT target and nothing else: a client that names another Host inside
 * the tunnel is refused, so one intercepted host cannot be used to reach another.
 */
export function createInterceptedRequestHandler(registry: RegistryHandler, logger: Logger, lifecycle: Lifecycle, observers: RequestObserver[] = []) {
  return (req: IncomingMessage, res: ServerResponse, connectTarget: string | undefined, isTls: boolean): void => {
    const started = Date.now();
    lifecycle.begin();
    // While draining, clients are told to reconnect, so their next request reaches another replica.
    if (lifecycle.draining) res.setHeader("connection", "close");
    const target = connectTarget ? parseConnectTarget(connectTarget) : undefined;
    const rr: RegistryRequest = {
      req,
      res,
      host: target?.host ?? "",
      port: target?.port ?? 0,
      log: { host: target?.host ?? "", method: req.method ?? "", path: (req.url ?? "").slice(0, 512), client: req.socket.remoteAddress },
    };
    const socketBytesAtStart = req.socket.bytesWritten;
    res.on("close", () => {
      lifecycle.end();
      const durationMs = Date.now() - started;
      const declared = Number(res.getHeader("content-length"));
      // Body bytes when the response completed as declared; otherwise what actually left (headers included).
      const bytes = res.writableFinished && Number.isFinite(declared) ? (req.method === "HEAD" ? 0 : declared) : req.socket.bytesWritten - socketBytesAtStart;
      logger.info({ ...rr.log, status: res.statusCode, bytes, durationMs, completed: res.writableFinished }, "request");
      for (const observe of observers) observe(rr, res.statusCode, bytes, durationMs);
    });
    if ((req.url ?? "").length > MAX_URL_LENGTH) {
      sendRegistryError(res, 414, "NAME_INVALID", `request target longer than ${MAX_URL_LENGTH} characters`);
      return;
    }
    if (!isTls || !target) {
      sendRegistryError(res, 400, "UNSUPPORTED", "regcache intercepts TLS only; send HTTPS inside CONNECT");
      return;
    }
    const hostHeader = (req.headers.host ?? "").toLowerCase();
    const expected = target.port === 443 ? [target.host, `${target.host}:443`] : [`${target.host}:${target.port}`];
    if (!expected.includes(hostHeader) && !expected.includes(hostHeader.replace(/^\[(.*)\](:\d+)?$/, "$1$2"))) {
      sendRegistryError(res, 421, "DENIED", `Host "${hostHeader.slice(0, 100)}" does not match the CONNECT target ${target.host}:${target.port}`);
      return;
    }
    registry.handle(rr).catch((err: unknown) => {
      logger.error({ err, host: rr.host, path: rr.log.path }, "request handling failed");
      sendRegistryError(res, 500, "UNAVAILABLE", "internal error in regcache");
    });
  };
}
