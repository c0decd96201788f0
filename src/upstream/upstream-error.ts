import { RegcacheError, type ErrorCode } from "../errors.js";

/**
 * Why an upstream exchange failed, in categories that policy (stale answers, circuit breaker) acts on.
 * "request" is the client's side: it went away mid-upload, or sent what cannot be forwarded.
 */
export type UpstreamFailure = "dns" | "connect" | "tls" | "timeout" | "refused-address" | "protocol" | "circuit-open" | "request";

/**
 * What says a host is failing, for the circuit breaker. A client's abort or bad request
 * says nothing about the registry, and must never mark it down for every other client.
 */
export function isUpstreamFault(failure: UpstreamFailure): boolean {
  return failure === "dns" || failure === "connect" || failure === "tls" || failure === "timeout" || failure === "protocol";
}

/** An upstream answer that says the registry cannot serve now: policy serves stale content instead. */
export function isUnavailableStatus(status: number): boolean {
  return status >= 500 || status === 429;
}

/**
 * Whether a failed exchange leaves the cache to answer on its own (offline access, stale tags,
 * the offline ping): every failure but an address the policy refuses to dial, which is a
 * refusal of the client's request (403), not an outage.
 */
export function isUpstreamOutage(err: unknown): boolean {
  return !(err instanceof UpstreamError && err.failure === "refused-address");
}

/** The error code of each category: what a client is answered (registry/errors.ts). */
const CODES: Record<UpstreamFailure, ErrorCode> = {
  dns: "UPSTREAM_UNREACHABLE",
  connect: "UPSTREAM_UNREACHABLE",
  timeout: "UPSTREAM_UNREACHABLE",
  "circuit-open": "UPSTREAM_UNREACHABLE",
  tls: "UPSTREAM_TLS",
  protocol: "UPSTREAM_PROTOCOL",
  "refused-address": "UPSTREAM_ADDRESS_REFUSED",
  request: "CLIENT_REQUEST",
};

export class UpstreamError extends RegcacheError {
  /** The host answers 429: clients should be told to slow down rather than that it is down. */
  readonly rateLimited: boolean;

  constructor(
    readonly failure: UpstreamFailure,
    readonly host: string,
    message: string,
    options?: { cause?: unknown; rateLimited?: boolean },
  ) {
    super(CODES[failure], `upstream ${host}: ${message}`, options);
    this.rateLimited = options?.rateLimited === true;
  }
}

const TLS_CODES = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_UNTRUSTED",
  "CERT_REVOKED",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "ERR_SSL_WRONG_VERSION_NUMBER",
]);

/** undici's refusals of what it was asked to send: the request's fault, not the registry's. */
const REQUEST_CODES = new Set(["UND_ERR_NOT_SUPPORTED", "UND_ERR_INVALID_ARG", "UND_ERR_REQ_CONTENT_LENGTH_MISMATCH", "UND_ERR_ABORTED"]);

/** Maps errors from undici, net, dns and tls onto our categories. */
export function classifyUpstreamError(err: unknown, host: string): UpstreamError {
  if (err instanceof UpstreamError) return err;
  const e = err as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  const code = e.code ?? e.cause?.code ?? "";
  const message = e.cause?.message ?? e.message ?? String(err);
  if (REQUEST_CODES.has(code)) return new UpstreamError("request", host, `request not forwarded (${code}): ${message}`, { cause: err });
  if (code === "ENOTFOUND" || code === "EAI_AGAIN" || code === "EAI_NONAME") return new UpstreamError("dns", host, `cannot resolve: ${message}`, { cause: err });
  if (TLS_CODES.has(code) || code.startsWith("ERR_SSL") || code.startsWith("ERR_TLS")) {
    return new UpstreamError("tls", host, `TLS verification failed (${code}): ${message}`, { cause: err });
  }
  if (code === "UND_ERR_CONNECT_TIMEOUT" || code === "UND_ERR_HEADERS_TIMEOUT" || code === "UND_ERR_BODY_TIMEOUT" || code === "ETIMEDOUT") {
    return new UpstreamError("timeout", host, `timed out (${code})`, { cause: err });
  }
  if (code === "ECONNREFUSED" || code === "ECONNRESET" || code === "EHOSTUNREACH" || code === "ENETUNREACH" || code === "UND_ERR_SOCKET" || code === "EPIPE") {
    return new UpstreamError("connect", host, `connection failed (${code}): ${message}`, { cause: err });
  }
  return new UpstreamError("protocol", host, message, { cause: err });
}
