import { RegcacheError, type ErrorCode } from "../errors.js";
import type { RegistryErrorCode } from "../oci/error-body.js";
import { UpstreamError } from "../upstream/upstream-error.js";
import { errorReply, writeReply } from "./reply.js";
import { cacheStatusHeaders, type RegistryRequest } from "./request-context.js";

export interface ErrorAnswer {
  status: number;
  code: RegistryErrorCode;
}

/**
 * How a failure is answered to an HTTP client, by its code alone, wherever it is caught.
 * Upstream's faults are 502, the cache's own disk is 500: a full or broken disk is never
 * reported as the registry's fault.
 */
export const ERROR_ANSWERS: Record<ErrorCode, ErrorAnswer> = {
  UPSTREAM_UNREACHABLE: { status: 502, code: "UNAVAILABLE" },
  UPSTREAM_TLS: { status: 502, code: "UNAVAILABLE" },
  UPSTREAM_PROTOCOL: { status: 502, code: "UNAVAILABLE" },
  UPSTREAM_ADDRESS_REFUSED: { status: 403, code: "DENIED" },
  CLIENT_REQUEST: { status: 400, code: "UNSUPPORTED" },
  IMAGE_REFERENCE: { status: 400, code: "NAME_INVALID" },
  CACHE_IO: { status: 500, code: "UNAVAILABLE" },
  SHARED_STORE: { status: 503, code: "UNAVAILABLE" },
  // Start-up and command-line failures reach no HTTP client; one that did would be regcache's own fault.
  USAGE: { status: 500, code: "UNAVAILABLE" },
  CA: { status: 500, code: "UNAVAILABLE" },
  CONFIG: { status: 500, code: "UNAVAILABLE" },
  DATA_DIR: { status: 500, code: "UNAVAILABLE" },
  DATA_DIR_LOCKED: { status: 500, code: "UNAVAILABLE" },
  LISTEN: { status: 500, code: "UNAVAILABLE" },
  PROXY: { status: 500, code: "UNAVAILABLE" },
  PULL: { status: 500, code: "UNAVAILABLE" },
};

/** An error without a code is a fault in regcache itself: 500, and its message stays in the log. */
const INTERNAL = { status: 500, code: "UNAVAILABLE", message: "internal error in regcache" } as const;

/** The status, registry error code and message a client is answered for `err`. Pure. */
export function errorAnswer(err: unknown): ErrorAnswer & { message: string } {
  return err instanceof RegcacheError ? { ...ERROR_ANSWERS[err.code], message: err.message } : INTERNAL;
}

/** Answers a request that failed before anything was served, as its error's code says. */
export function sendFailure(rr: RegistryRequest, err: unknown): void {
  if (err instanceof UpstreamError) rr.log.upstreamStatus = 0;
  rr.log.cache = "BYPASS";
  const answer = errorAnswer(err);
  writeReply(rr.res, errorReply(answer.status, answer.code, answer.message, cacheStatusHeaders("BYPASS")), rr.req.method);
}
