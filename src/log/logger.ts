import { pino, type Logger } from "pino";
import { redactSecrets } from "./redact-secrets.js";

export type { Logger };

export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

export function createLogger(level: LogLevel, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { name: "regcache" },
      // Credentials, cookies, tokens and passwords never reach a log line (redact-secrets.ts).
      formatters: { log: redactSecrets },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? pino.destination({ fd: 1, sync: false }),
  );
}

/**
 * http-mitm-proxy writes its diagnostics with console.*; in the server process those
 * lines belong in the JSON log stream, not interleaved as free text on stdout.
 */
export function routeConsoleToLogger(logger: Logger): void {
  const child = logger.child({ component: "http-mitm-proxy" });
  const format = (args: unknown[]): string =>
    args.map((a) => (a instanceof Error ? a.stack ?? a.message : typeof a === "string" ? a : JSON.stringify(a))).join(" ");
  console.debug = (...args: unknown[]) => child.debug(format(args));
  console.log = (...args: unknown[]) => child.debug(format(args));
  console.info = (...args: unknown[]) => child.debug(format(args));
  console.warn = (...args: unknown[]) => child.warn(format(args));
  console.error = (...args: unknown[]) => child.warn(format(args));
}
