import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "../log/logger.js";
import { errorAnswer } from "../registry/errors.js";
import { errorReply, writeReply } from "../registry/reply.js";
import type { RegistryHandler } from "../registry/registry-handler.js";
import type { RegistryRequest } from "../registry/request-context.js";
import type { Lifecycle } from "./lifecycle.js";
import { parseConnectTarget, type ConnectTarget } from "./connect-policy.js";
import { countBodyBytes } from "./response-bytes.js";
import { responseCut } from "./response-cut.js";

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
    const bodyBytes = countBodyBytes(res);
    res.on("close", () => {
      lifecycle.end();
      const durationMs = Date.now() - started;
      const bytes = bodyBytes();
      const cut = responseCut(res);
      if (cut) Object.assign(rr.log, cut);
      // A client that goes away mid-response is ordinary (a cancelled pull): one info line, no stack.
      logger.info({ ...rr.log, status: res.statusCode, bytes, durationMs, completed: res.writableFinished }, "request");
      try {
        for (const observe of observers) observe(rr, res.statusCode, bytes, durationMs);
      } catch (err) {
        logger.error({ err }, "request observer failed");
      }
    });
    try {
      route(rr, target, isTls, registry, logger);
    } catch (err) {
      failRequest(rr, err, logger);
    }
  };
}

/** Refuses what regcache cannot handle, then hands the request to the registry handler. */
function route(rr: RegistryRequest, target: ConnectTarget | undefined, isTls: boolean, registry: RegistryHandler, logger: Logger): void {
  const { req, res } = rr;
  if ((req.url ?? "").length > MAX_URL_LENGTH) {
    writeReply(res, errorReply(414, "NAME_INVALID", `request target longer than ${MAX_URL_LENGTH} characters`), req.method);
    return;
  }
  if (!isTls || !target) {
    writeReply(res, errorReply(400, "UNSUPPORTED", "regcache intercepts TLS only; send HTTPS inside CONNECT"), req.method);
    return;
  }
  const hostHeader = (req.headers.host ?? "").toLowerCase();
  const expected = target.port === 443 ? [target.host, `${target.host}:443`] : [`${target.host}:${target.port}`];
  if (!expected.includes(hostHeader) && !expected.includes(hostHeader.replace(/^\[(.*)\](:\d+)?$/, "$1$2"))) {
    writeReply(res, errorReply(421, "DENIED", `Host "${hostHeader.slice(0, 100)}" does not match the CONNECT target ${target.host}:${target.port}`), req.method);
    return;
  }
  registry.handle(rr).catch((err: unknown) => failRequest(rr, err, logger));
}

/** A fault in one request's handling fails that request alone: an error if nothing was sent yet, else a cut connection. */
function failRequest(rr: RegistryRequest, err: unknown, logger: Logger): void {
  logger.error({ err, host: rr.host, path: rr.log.path }, "request handling failed");
  const answer = errorAnswer(err);
  writeReply(rr.res, errorReply(answer.status, answer.code, answer.message), rr.req.method);
}
