import { spawn } from "node:child_process";
import { constants as osConstants } from "node:os";
import path from "node:path";
import { inspect } from "node:util";
import { Command } from "commander";
import { RegcacheError, systemReason } from "../errors.js";
import { createLogger, routeConsoleToLogger } from "../log/logger.js";
import { startRegcache } from "../regcache.js";
import { makeDirectory } from "../util/make-directory.js";
import { VERSION } from "../version.js";
import { caCommand } from "./ca-command.js";
import { cacheCommand } from "./cache-command.js";
import { healthCommand } from "./health-command.js";
import { boundHeapGrowth } from "../util/heap-growth.js";
import { prefetchCommand } from "./prefetch-command.js";
import { serveOptions, toConfig, type RawServeOptions } from "./serve-options.js";
import { statsCommand } from "./stats-command.js";

/** Exit codes (docs/operations.md, "Errors and exit codes"): the command line was wrong, or running failed. */
const EXIT_USAGE = 2;
const EXIT_RUNTIME = 1;
/** Log levels at which an error is shown with its stack, as --debug does. */
const DEBUG_LEVELS: unknown[] = ["debug", "trace"];

const program = new Command("regcache")
  .description("HTTPS man-in-the-middle caching proxy for container image registries")
  .version(VERSION)
  .option("--debug", "show where an error came from (stack trace); so does --log-level debug or REGCACHE_LOG_LEVEL=debug");

const serve = program.command("serve").description("run the proxy");
for (const option of serveOptions()) serve.addOption(option);
serve.action(async (raw: RawServeOptions) => {
  boundHeapGrowth();
  const config = toConfig(raw);
  await checkDataDir(config.dataDir);
  const logger = createLogger(config.logLevel);
  routeConsoleToLogger(logger);
  exitOnEscapedErrors(logger);
  const running = await startRegcache(config, logger).catch((err: unknown) => {
    // Node's "listen EADDRINUSE: address already in use 0.0.0.0:3128" does not say it is regcache's own port.
    throw (err as NodeJS.ErrnoException).syscall === "listen" ? new RegcacheError("LISTEN", `cannot listen on ${raw.listen}: ${systemReason(err)}`, { cause: err }) : err;
  });
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      // A second Ctrl-C means the operator will not wait out the grace period for in-flight responses.
      logger.warn({ signal }, "second signal during shutdown; exiting at once");
      logger.flush();
      process.exit(128 + osConstants.signals[signal]);
    }
    stopping = true;
    logger.info({ signal, drainDelayMs: config.drainDelay, graceMs: config.shutdownGrace }, "shutting down");
    running.shutdown(config.drainDelay, config.shutdownGrace).then(
      () => {
        logger.flush();
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, "shutdown failed");
        logger.flush();
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
});

/**
 * A data dir on a network mount whose server is gone does not fail: every call into it waits.
 * Start-up gives it this long, then says so, rather than hang without a word.
 */
const DATA_DIR_ANSWER_MS = 5_000;

/**
 * Whether the filesystem of `dir` answers, asked by a child process (`mkdir -p`): a call that
 * never returns would hold one of Node's own threads, and Node waits for those on exit, so the
 * error could never end the process. The child is killed instead. No `mkdir` at all counts as an
 * answer: the check in this process still runs.
 */
function answersWithin(dir: string, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn("mkdir", ["-p", "--", dir], { stdio: "ignore" });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      child.unref();
      resolve(false);
    }, ms);
    const answered = (): void => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once("exit", answered);
    child.once("error", answered);
  });
}

/**
 * Checked before start-up touches it, so that a directory that cannot be made (a read-only volume
 * without it, another user's) or a mount that does not answer is reported as such, naming the
 * option, rather than as whichever write failed first, or not at all. A data dir that exists on a
 * disk that cannot be written is served read-only (cache/data-disk.ts): what it holds is still
 * worth serving.
 */
async function checkDataDir(dir: string): Promise<void> {
  const where = path.resolve(dir);
  if (!(await answersWithin(where, DATA_DIR_ANSWER_MS))) {
    throw new RegcacheError("DATA_DIR", `cannot reach --data-dir ${where}: its filesystem did not answer within ${DATA_DIR_ANSWER_MS / 1000} s (a network mount whose server is down?)`);
  }
  try {
    await makeDirectory(dir);
  } catch (err) {
    throw new RegcacheError("DATA_DIR", `cannot write to --data-dir ${where}: ${systemReason(err)}`, { cause: err });
  }
}

/**
 * Every request's faults are caught where they happen; an error that still escapes is a bug
 * whose damage cannot be bounded (a half-updated index, a leaked descriptor). The process logs it
 * and exits with 70 (EX_SOFTWARE) so the orchestrator restarts it clean, rather than serve on
 * in an unknown state; replicas carry the traffic meanwhile.
 */
function exitOnEscapedErrors(logger: ReturnType<typeof createLogger>): void {
  const die = (err: unknown, kind: string): void => {
    logger.fatal({ err, kind }, "error escaped every handler; exiting for a clean restart");
    setTimeout(() => process.exit(70), 1_000).unref();
    logger.flush(() => process.exit(70));
  };
  process.on("uncaughtException", (err) => die(err, "uncaughtException"));
  process.on("unhandledRejection", (err) => die(err, "unhandledRejection"));
}

program.addCommand(caCommand());
program.addCommand(prefetchCommand());
program.addCommand(statsCommand());
program.addCommand(healthCommand());
program.addCommand(cacheCommand());

/**
 * Commander's own usage errors (unknown option or command, missing or invalid value) read like
 * every other error, on one line with where to look, and exit 2 like a malformed value does.
 */
function reportUsageErrors(command: Command, name: string): void {
  command
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : EXIT_USAGE))
    .configureOutput({ outputError: (text, write) => write(`regcache: ${text.trim().replace(/^error: /, "").replace(/\s*\n\s*/g, " ")} (see ${name} --help)\n`) });
  for (const sub of command.commands) reportUsageErrors(sub, `${name} ${sub.name()}`);
}
reportUsageErrors(program, program.name());

program.parseAsync(process.argv).catch((err: unknown) => {
  const anticipated = err instanceof RegcacheError;
  const debug = program.opts<{ debug?: boolean }>().debug === true || [serve.getOptionValue("logLevel"), process.env.REGCACHE_LOG_LEVEL].some((level) => DEBUG_LEVELS.includes(level));
  const detail = debug ? `\n${inspect(err)}` : anticipated ? "" : " (--debug shows where it came from)";
  process.stderr.write(`regcache: ${anticipated ? err.message : String(err)}${detail}\n`);
  process.exit(anticipated && err.code === "USAGE" ? EXIT_USAGE : EXIT_RUNTIME);
});
