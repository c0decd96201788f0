#!/usr/bin/env node
import { Command, Option } from "commander";
import { loadOrCreateCa } from "../tls/ca.js";
import { OptionError, parseHostPattern } from "../config/parse.js";
import { createLogger, routeConsoleToLogger } from "../log/logger.js";
import { startRegcache } from "../regcache.js";
import { serveOptions, toConfig, type RawServeOptions } from "./serve-options.js";
import { DEFAULTS } from "../config/config.js";
import { prefetchCommand } from "./prefetch-command.js";
import { statsCommand } from "./stats-command.js";

const program = new Command("regcache")
  .description("HTTPS man-in-the-middle caching proxy for container image registries")
  .showHelpAfterError();

const serve = program.command("serve").description("run the proxy");
for (const option of serveOptions()) serve.addOption(option);
serve.action(async (raw: RawServeOptions) => {
  const config = toConfig(raw);
  const logger = createLogger(config.logLevel);
  routeConsoleToLogger(logger);
  exitOnEscapedErrors(logger);
  const running = await startRegcache(config, logger);
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
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

const ca = program.command("ca").description("manage the root CA");
const certsDirOption = (): Option => new Option("--certs-dir <dir>", "directory of ca.crt and ca.key").env("REGCACHE_CERTS_DIR").default(DEFAULTS.certsDir);
ca.command("init")
  .description("create the root CA if it is missing, and print where it is")
  .addOption(certsDirOption())
  .addOption(
    new Option("--name-constraint <domain>", "only allow the CA to issue for this DNS subtree (X.509 Name Constraints); repeatable").argParser(
      (value: string, previous: string[] | undefined) => [...(previous ?? []), parseHostPattern(value, "--name-constraint")],
    ),
  )
  .option("--common-name <cn>", "subject common name of a new CA")
  .action(async (opts: { certsDir: string; nameConstraint?: string[]; commonName?: string }) => {
    const authority = await loadOrCreateCa(opts.certsDir, { nameConstraints: opts.nameConstraint, commonName: opts.commonName });
    if (!authority.created && opts.nameConstraint) {
      process.stderr.write(`note: a CA already exists in ${opts.certsDir}; --name-constraint applies to new CAs only\n`);
    }
    process.stdout.write(`${authority.created ? "created" : "exists"}: ${authority.certPath}\n`);
  });
ca.command("cert")
  .description("print the root CA certificate (PEM)")
  .addOption(certsDirOption())
  .action(async (opts: { certsDir: string }) => {
    const authority = await loadOrCreateCa(opts.certsDir);
    process.stdout.write(authority.certPem);
  });

program.addCommand(prefetchCommand());
program.addCommand(statsCommand());

program.parseAsync(process.argv).catch((err: unknown) => {
  const error = err as Error;
  const known = error instanceof OptionError || ["CaError", "DataDirLockedError", "TrustStoreError", "PullError", "ImageReferenceError", "CredentialsFileError", "ProxyAuthFileError"].includes(error.name) || error.message.startsWith("no image references") || error.message.startsWith("cannot fetch");
  process.stderr.write(`regcache: ${known ? error.message : (error.stack ?? error.message)}\n`);
  process.exit(known ? 2 : 1);
});
