import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";

export interface TestPki {
  dir: string;
  caCert: string;
  /** The CA's key: the token server signs registry tokens with it. */
  caKey: string;
  serverCert: string;
  serverKey: string;
  /** A directory with ca.crt, as skopeo's --dest-cert-dir wants it. */
  certDir: string;
}

/**
 * A test CA and a server certificate for the fake registries, made with the openssl
 * CLI so that the test PKI does not share code with regcache's own minting.
 */
export function createTestPki(dir: string, names: string[]): TestPki {
  mkdirSync(dir, { recursive: true });
  const caKey = path.join(dir, "test-ca.key");
  const caCert = path.join(dir, "test-ca.crt");
  const serverKey = path.join(dir, "server.key");
  const serverCsr = path.join(dir, "server.csr");
  const serverCert = path.join(dir, "server.crt");
  const ext = path.join(dir, "server.ext");
  const run = (...args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
  run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", caKey, "-out", caCert, "-days", "30", "-subj", "/CN=regcache test upstream CA");
  run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", serverKey, "-out", serverCsr, "-subj", `/CN=${names[0]}`);
  const alt = names.map((n, i) => (/^\d+\.\d+\.\d+\.\d+$/.test(n) || n.includes(":") ? `IP.${i + 1} = ${n}` : `DNS.${i + 1} = ${n}`)).join("\n");
  writeFileSync(ext, `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=@alt\n[alt]\n${alt}\n`);
  run("x509", "-req", "-in", serverCsr, "-CA", caCert, "-CAkey", caKey, "-CAcreateserial", "-out", serverCert, "-days", "30", "-extfile", ext);
  const certDir = path.join(dir, "certdir");
  mkdirSync(certDir, { recursive: true });
  execFileSync("cp", [caCert, path.join(certDir, "ca.crt")]);
  return { dir, caCert, caKey, serverCert, serverKey, certDir };
}
