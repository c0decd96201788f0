import type { Logger } from "../log/logger.js";
import { errorAnswer } from "../registry/errors.js";
import { errorReply, writeReply } from "../registry/reply.js";
import type { RegistryHandler } from "../registry/registry-handler.js";
import type { RegistryRequest } from "../registry/request-context.js";
import type { Lifecycle } from "./lifecycle.js";
import { countBodyBytes } from "./response-bytes.js";
import { responseCut } from "./response-cut.js";

/** Registry paths are a name (at most 255) plus a digest or tag; anything far longer is abuse. */
export const MAX_URL_LENGTH = 4096;

export interface RequestObserver {
  (rr: RegistryRequest, status: number, bytes: number, durationMs: number): void;
}

/**
 * Checks a request before the registry handler gets it: answers what cannot go on itself and
 * says false, or says true (after filling in what the handler needs).
 */
export type Admission = (rr: RegistryRequest) => boolean | Promise<boolean>;

/** Runs one registry request from wherever it came in (a CONNECT tunnel, the mirror port). */
export type RequestRunner = (rr: RegistryRequest, admit: Admission) => void;

/**
 * Every registry request is run the same way: counted while in flight (shutdown waits for it),
 * told to reconnect elsewhere while draining, logged in one line when it closes, reported to the
 * observers (stats, metrics), and a fault in its handling fails that request alone.
 */
export function createRequestRunner(registry: RegistryHandler, logger: Logger, lifecycle: Lifecycle, observers: RequestObserver[] = []): RequestRunner {
  return (rr, admit) => {
    const started = performance.now();
    const { res } = rr;
    lifecycle.begin(rr.log, res);
    // While draining, clients are told to reconnect, so their next request reaches another replica.
    if (lifecycle.draining) res.setHeader("connection", "close");
    const bodyBytes = countBodyBytes(res);
    res.on("close", () => {
      lifecycle.end(rr.log);
      const durationMs = Math.round(performance.now() - started);
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
    if ((rr.req.url ?? "").length > MAX_URL_LENGTH) {
      writeReply(res, errorReply(414, "NAME_INVALID", `request target longer than ${MAX_URL_LENGTH} characters`), rr.req.method);
      return;
    }
    try {
      const admitted = admit(rr);
      if (admitted === true) registry.handle(rr).catch((err: unknown) => failRequest(rr, err, logger));
      else if (admitted !== false) admitted.then((ok) => (ok ? registry.handle(rr) : undefined)).catch((err: unknown) => failRequest(rr, err, logger));
    } catch (err) {
      failRequest(rr, err, logger);
    }
  };
}

/** A fault in one request's handling fails that request alone: an error if nothing was sent yet, else a cut connection. */
function failRequest(rr: RegistryRequest, err: unknown, logger: Logger): void {
  logger.error({ err, host: rr.host, path: rr.log.path }, "request handling failed");
  const answer = errorAnswer(err);
  writeReply(rr.res, errorReply(answer.status, answer.code, answer.message), rr.req.method);
}
