import { createPrivateKey, generateKeyPairSync, randomBytes, X509Certificate, type KeyObject } from "node:crypto";
import { constants as fsConstants } from "node:fs";
import { access, link, open, readFile, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import forge from "node-forge";
import { RegcacheError, systemReason } from "../errors.js";
import { makeDirectory } from "../util/make-directory.js";
import { buildSignedCertificate, subjectNameDerOf } from "./certificate-builder.js";
import { permittedDnsNameConstraints } from "./name-constraints.js";

export const CA_CERT_FILE = "ca.crt";
export const CA_KEY_FILE = "ca.key";

/** A root CA lives long because every node trusts it; rotating it means touching every node. */
const CA_VALIDITY_YEARS = 10;
/** RSA 3072 is NIST's recommendation for keys used beyond 2030. */
const CA_KEY_BITS = 3072;
/**
 * A key without its certificate this young is another process's CA being created (the key is
 * published first, the certificate a moment later): it is waited for rather than called incomplete.
 */
const CREATION_WINDOW_MS = 30_000;

export interface CertificateAuthority {
  certPem: string;
  key: KeyObject;
  certificate: X509Certificate;
  subjectCommonName: string;
  /** The subject Name's DER, the issuer of every certificate the CA signs. */
  subjectName: Buffer;
  /** DNS subtrees the CA may issue for; empty means no constraint. */
  permittedDomains: string[];
  certPath: string;
  created: boolean;
}

export class CaError extends RegcacheError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("CA", message, options);
  }
}

export interface CaInitOptions {
  commonName?: string;
  nameConstraints?: string[];
}

export async function loadOrCreateCa(certsDir: string, init: CaInitOptions = {}): Promise<CertificateAuthority> {
  const { certPath, keyPath, present } = await locateCa(certsDir);
  if (present) return loadCa(certPath, keyPath);
  const created = await createCa(certsDir, certPath, keyPath, init);
  // A process that lost the race to create the CA waits for the winner's certificate and uses its CA.
  if (!created) await locateCa(certsDir);
  return { ...(await loadCa(certPath, keyPath)), created };
}

/**
 * The CA that is already in `certsDir`. Commands that only show the CA use this: a mistyped
 * --certs-dir must fail, not mint a new CA that no node trusts.
 */
export async function loadExistingCa(certsDir: string): Promise<CertificateAuthority> {
  const { certPath, keyPath, present } = await locateCa(certsDir);
  if (!present) throw new CaError(`no CA in ${path.resolve(certsDir)} (no ${CA_CERT_FILE}): pass the --certs-dir that serve uses, or create a CA with: regcache ca init --certs-dir ${certsDir}`);
  return loadCa(certPath, keyPath);
}

/**
 * Where the CA's files are, and whether they exist; one without the other is an error, never
 * replaced, except a key younger than CREATION_WINDOW_MS, whose certificate is waited for.
 */
async function locateCa(certsDir: string): Promise<{ certPath: string; keyPath: string; present: boolean }> {
  const certPath = path.join(certsDir, CA_CERT_FILE);
  const keyPath = path.join(certsDir, CA_KEY_FILE);
  for (;;) {
    const [certExists, keyExists] = await Promise.all([exists(certPath), exists(keyPath)]);
    if (certExists === keyExists) return { certPath, keyPath, present: certExists };
    if (keyExists && (await beingCreated(keyPath))) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      continue;
    }
    throw new CaError(
      `CA incomplete in ${certsDir}: ${certExists ? CA_KEY_FILE : CA_CERT_FILE} is missing while ${certExists ? CA_CERT_FILE : CA_KEY_FILE} exists; restore it or remove both to create a new CA`,
    );
  }
}

async function beingCreated(keyPath: string): Promise<boolean> {
  const written = await stat(keyPath).then((s) => s.mtimeMs, () => undefined);
  return written !== undefined && Math.abs(Date.now() - written) < CREATION_WINDOW_MS;
}

async function readCaFile(file: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (err) {
    throw new CaError(`cannot read ${file}: ${systemReason(err)}`, { cause: err });
  }
}

async function loadCa(certPath: string, keyPath: string): Promise<CertificateAuthority> {
  const [certPem, keyPem] = await Promise.all([readCaFile(certPath), readCaFile(keyPath)]);
  let certificate: X509Certificate;
  let key: KeyObject;
  try {
    certificate = new X509Certificate(certPem);
    key = createPrivateKey(keyPem);
  } catch (err) {
    throw new CaError(`cannot parse CA files ${certPath} / ${keyPath}: ${(err as Error).message}`, { cause: err });
  }
  if (!certificate.checkPrivateKey(key)) {
    throw new CaError(`CA key ${keyPath} does not match certificate ${certPath}`);
  }
  if (!certificate.ca) {
    throw new CaError(`${certPath} is not a CA certificate (basicConstraints CA:TRUE missing)`);
  }
  return {
    certPem,
    key,
    certificate,
    subjectCommonName: commonNameOf(certificate.subject),
    subjectName: subjectNameDerOf(certPem),
    permittedDomains: permittedDomainsOf(certificate),
    certPath,
    created: false,
  };
}

/** Creates the CA; false when another process published its key first (its CA is the one to use). */
async function createCa(certsDir: string, certPath: string, keyPath: string, init: CaInitOptions): Promise<boolean> {
  try {
    await makeDirectory(certsDir);
  } catch (err) {
    throw new CaError(`cannot create certs dir ${certsDir}: ${systemReason(err)}`, { cause: err });
  }
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: CA_KEY_BITS });
  const keyPem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  const now = new Date();
  const notBefore = new Date(now.getTime() - 60 * 60 * 1000);
  const notAfter = new Date(now);
  notAfter.setFullYear(now.getFullYear() + CA_VALIDITY_YEARS);
  const constraints = init.nameConstraints ?? [];
  const extensions: object[] = [
    { name: "basicConstraints", cA: true, critical: true },
    { name: "keyUsage", keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: "subjectKeyIdentifier" },
  ];
  if (constraints.length > 0) extensions.push(permittedDnsNameConstraints(constraints));
  const certPem = buildSignedCertificate(
    {
      commonName: init.commonName ?? `regcache root CA ${now.toISOString().slice(0, 10)}`,
      publicKey: privateKey,
      notBefore,
      notAfter,
      extensions,
    },
    privateKey,
  );
  // The key is written to a temp name with mode 0600 from the first byte, so no reader ever sees a
  // partial or world-readable key, and published by a hard link, which fails if a key is there: of
  // two processes creating a CA at once, one publishes its key and certificate, the other uses them.
  if (!(await writeAtomically(keyPath, keyPem, 0o600, "exclusive"))) return false;
  await writeAtomically(certPath, certPem, 0o644, "replace");
  return true;
}

/** Writes `contents` under `target`; "exclusive" leaves a file already there alone and answers false. */
async function writeAtomically(target: string, contents: string, mode: number, publish: "exclusive" | "replace"): Promise<boolean> {
  const temp = `${target}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    const handle = await open(temp, "wx", mode);
    try {
      await handle.writeFile(contents);
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (publish === "replace") {
      await rename(temp, target);
      return true;
    }
    try {
      await link(temp, target);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
      throw err;
    } finally {
      await rm(temp, { force: true });
    }
  } catch (err) {
    await rm(temp, { force: true });
    throw new CaError(`cannot write ${target}: ${systemReason(err)}`, { cause: err });
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file, fsConstants.F_OK);
    return true;
  } catch {
    return false;
  }
}

function commonNameOf(subject: string): string {
  const line = subject.split("\n").find((l) => l.startsWith("CN="));
  return line ? line.slice(3) : "regcache root CA";
}

/** Reads permitted DNS subtrees back from the Name Constraints extension, if present. */
function permittedDomainsOf(certificate: X509Certificate): string[] {
  const forgeCert = forge.pki.certificateFromPem(certificate.toString());
  const ext = forgeCert.extensions.find((e: { id?: string }) => e.id === "2.5.29.30") as { value?: string } | undefined;
  if (!ext?.value) return [];
  return dnsNamesInDer(ext.value);
}

function dnsNamesInDer(der: string): string[] {
  const names: string[] = [];
  const walk = (node: forge.asn1.Asn1): void => {
    if (node.tagClass === forge.asn1.Class.CONTEXT_SPECIFIC && node.type === 2 && typeof node.value === "string") {
      names.push(node.value);
      return;
    }
    if (Array.isArray(node.value)) node.value.forEach(walk);
  };
  walk(forge.asn1.fromDer(der));
  return names;
}
