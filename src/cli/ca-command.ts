import { Command, Option } from "commander";
import { DEFAULTS } from "../config/config.js";
import { parseHostPattern } from "../config/parse.js";
import { loadExistingCa, loadOrCreateCa } from "../tls/ca.js";

const certsDirOption = (): Option => new Option("--certs-dir <dir>", "directory of ca.crt and ca.key").env("REGCACHE_CERTS_DIR").default(DEFAULTS.certsDir);

/** `regcache ca init|cert|fingerprint`: the root CA from a terminal. */
export function caCommand(): Command {
  const ca = new Command("ca").description("manage the root CA");
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
    .description("print the root CA certificate (PEM); never creates one")
    .addOption(certsDirOption())
    .action(async (opts: { certsDir: string }) => {
      process.stdout.write((await loadExistingCa(opts.certsDir)).certPem);
    });
  ca.command("fingerprint")
    .description("print the root CA certificate's SHA-256 fingerprint as uppercase hex pairs joined by colons, the form of `openssl x509 -noout -fingerprint -sha256` (node-setup.sh --ca-sha256 takes it)")
    .addOption(certsDirOption())
    .action(async (opts: { certsDir: string }) => {
      process.stdout.write(`${(await loadExistingCa(opts.certsDir)).certificate.fingerprint256}\n`);
    });
  return ca;
}
