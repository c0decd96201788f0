import { getSystemErrorMap } from "node:util";

/**
 * What kind of failure an error is. Callers decide by the code, never by matching messages,
 * so messages stay free to improve. The code alone says how a failure is answered: the CLI's
 * exit status (cli/run.ts: USAGE is the operator's input, exit 2; the rest exit 1) and an HTTP
 * client's status (registry/errors.ts, one table).
 */
export type ErrorCode =
  | "USAGE"
  | "CA"
  | "CONFIG"
  | "DATA_DIR"
  | "DATA_DIR_LOCKED"
  | "LISTEN"
  | "PROXY"
  | "PULL"
  | "IMAGE_REFERENCE"
  /** Upstream could not be reached or answered nothing usable: DNS, connect, timeout, open circuit. */
  | "UPSTREAM_UNREACHABLE"
  | "UPSTREAM_TLS"
  /** Upstream answered, but not in HTTP or registry terms regcache can use. */
  | "UPSTREAM_PROTOCOL"
  /** The address policy refuses to dial where the name resolves (--deny-private-addresses). */
  | "UPSTREAM_ADDRESS_REFUSED"
  /** The client's side of an exchange: it went away mid-upload, or sent what cannot be forwarded. */
  | "CLIENT_REQUEST"
  /** The cache's own disk: a directory or file that cannot be made, written or read. */
  | "CACHE_IO"
  /** The fleet's shared object store or index (--blob-store, --index) cannot be reached or answered with an error. */
  | "SHARED_STORE";

/** A failure regcache anticipated: its message alone tells the operator what to do. */
export class RegcacheError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** libuv's wording by error name ("EADDRINUSE" -> "address already in use"). */
const SYSTEM_MESSAGES = new Map([...getSystemErrorMap().values()]);

/**
 * Why a system call failed, in words, without Node's "EACCES: permission denied, mkdir '/x'"
 * repetition of the call and path that the caller's message already names.
 */
export function systemReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return (code === undefined ? undefined : SYSTEM_MESSAGES.get(code)) ?? (err instanceof Error ? err.message : String(err));
}
