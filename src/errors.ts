import { getSystemErrorMap } from "node:util";

/**
 * What kind of failure an error is. Callers decide by the code, never by matching messages,
 * so messages stay free to improve. USAGE is the operator's input (exit 2); the rest happen
 * while running (exit 1).
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
  | "IMAGE_REFERENCE";

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
