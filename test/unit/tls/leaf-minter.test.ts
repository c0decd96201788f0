import { execFileSync } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, connect, type TLSSocket } from "node:tls";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadOrCreateCa, type CertificateAuthority } from "../../../src/tls/ca.js";
import { LeafMinter, type Leaf } from "../../../src/tls/leaf-minter.js";

const DAY = 86_400_000;

describe("leaves", () => {
  let dir: string;
  let ca: CertificateAuthority;
  let constrained: CertificateAuthority;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "regcache-leaf-"));
    ca = await loadOrCreateCa(path.join(dir, "certs"));
    constrained = await loadOrCreateCa(path.join(dir, "constrained"), { nameConstraints: ["quay.test"] });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** What OpenSSL's verifier (curl's) says of the chain a server sends, trusting only the root. */
  const opensslVerify = (root: CertificateAuthority, leaf: Leaf): string => {
    const file = (name: string, pem: string) => {
      const p = path.join(dir, name);
      writeFileSync(p, pem);
      return p;
    };
    try {
      return execFileSync("openssl", ["verify", "-CAfile", root.certPath, "-untrusted", file("issuer.pem", leaf.issuer.certPem), file("leaf.pem", leaf.certPem)], { encoding: "utf8", stdio: "pipe" });
    } catch (err) {
      return String((err as { stdout?: string }).stdout) + String((err as { stderr?: string }).stderr);
    }
  };

  it("are ECDSA P-256, serverAuth, positive serial, named by SAN, and chain to the root through the issuer", async () => {
    const leaf = new LeafMinter(ca).leafFor("registry-1.docker.io");
    const cert = new X509Certificate(leaf.certPem);
    const issuer = new X509Certificate(leaf.issuer.certPem);
    expect(cert.subjectAltName).toBe("DNS:registry-1.docker.io");
    expect(cert.subject).toBe("CN=registry-1.docker.io");
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
    expect(cert.ca).toBe(false);
    expect(cert.keyUsage).toEqual(["1.3.6.1.5.5.7.3.1"]);
    expect(Number.parseInt(cert.serialNumber[0]!, 16)).toBeLessThan(8);
    expect(cert.checkHost("registry-1.docker.io")).toBe("registry-1.docker.io");
    expect(cert.checkIssued(ca.certificate)).toBe(false);
    expect(cert.checkIssued(issuer)).toBe(true);
    expect(cert.verify(issuer.publicKey)).toBe(true);
    expect(issuer.checkIssued(ca.certificate)).toBe(true);
    expect(issuer.verify(ca.certificate.publicKey)).toBe(true);
    expect(leaf.chainPem).toBe(leaf.certPem + leaf.issuer.certPem);
    expect(opensslVerify(ca, leaf)).toMatch(/leaf\.pem: OK/);
  });

  it("chain to their own root when a client trusts two roots of the same subject, as in a CA rotation", async () => {
    const next = await loadOrCreateCa(path.join(dir, "next"), { commonName: ca.subjectCommonName });
    expect(next.certificate.subject).toBe(ca.certificate.subject);
    const keyId = (pem: string, ext: string): string => execFileSync("openssl", ["x509", "-noout", "-ext", ext], { input: pem, encoding: "utf8" }).split("\n")[1]!.trim().replace(/^keyid:/, "");
    // RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits, so each root has its own.
    const spki = ca.certificate.publicKey.export({ type: "spki", format: "der" });
    const bits = spki.subarray(spki.length - (ca.certificate.publicKey.export({ type: "pkcs1", format: "der" }) as Buffer).length);
    expect(keyId(ca.certPem, "subjectKeyIdentifier")).toBe(createHash("sha1").update(bits).digest("hex").toUpperCase().match(/../g)!.join(":"));
    expect(keyId(next.certPem, "subjectKeyIdentifier")).not.toBe(keyId(ca.certPem, "subjectKeyIdentifier"));
    const both = path.join(dir, "both.pem");
    writeFileSync(both, ca.certPem + next.certPem);
    for (const root of [ca, next]) {
      const leaf = new LeafMinter(root).leafFor("quay.io");
      expect(keyId(leaf.issuer.certPem, "authorityKeyIdentifier")).toBe(keyId(root.certPem, "subjectKeyIdentifier"));
      expect(opensslVerify({ ...root, certPath: both }, leaf)).toMatch(/leaf\.pem: OK/);
    }
  });

  it("are signed by an issuer that is a CA for server leaves only, one level deep, living days", async () => {
    const now = Date.now();
    const leaf = new LeafMinter(ca, 10, () => now).leafFor("quay.io");
    // forge cannot read a certificate with an EC key; OpenSSL prints the extensions.
    const text = execFileSync("openssl", ["x509", "-noout", "-text"], { input: leaf.issuer.certPem, encoding: "utf8" });
    expect(text).toMatch(/Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
    expect(text).toMatch(/Key Usage: critical\s+Digital Signature, Certificate Sign\n/);
    expect(text).toMatch(/Extended Key Usage:\s+TLS Web Server Authentication\n/);
    const x509 = new X509Certificate(leaf.issuer.certPem);
    expect(x509.publicKey.asymmetricKeyType).toBe("ec");
    expect(new Date(x509.validTo).getTime() - now).toBeLessThanOrEqual(7 * DAY);
    expect(new Date(new X509Certificate(leaf.certPem).validTo).getTime()).toBe(Math.floor(leaf.issuer.notAfter / 1000) * 1000);
  });

  it("name IP literals (v4, v6, v4-mapped) and over-long host names by a SAN alone, which OpenSSL accepts", async () => {
    const minter = new LeafMinter(ca);
    const cases: [string, string][] = [
      ["10.1.2.3", "IP Address:10.1.2.3"],
      ["::1", "IP Address:0:0:0:0:0:0:0:1"],
      ["fd00:1:2::9", "IP Address:FD00:1:2:0:0:0:0:9"],
      ["::ffff:10.0.0.1", "IP Address:0:0:0:0:0:FFFF:A00:1"],
    ];
    for (const [host, san] of cases) {
      const leaf = minter.leafFor(host);
      const cert = new X509Certificate(leaf.certPem);
      expect(cert.subjectAltName?.toUpperCase()).toBe(san.toUpperCase());
      expect(cert.checkIP(host)).toBe(host);
      expect(cert.subject ?? "").toBe("");
      expect(opensslVerify(ca, leaf)).toMatch(/leaf\.pem: OK/);
    }
    const long = `${"a".repeat(63)}.${"b".repeat(63)}.example.test`;
    const leaf = minter.leafFor(long);
    const cert = new X509Certificate(leaf.certPem);
    expect(cert.subject ?? "").toBe("");
    expect(cert.checkHost(long)).toBe(long);
    expect(opensslVerify(ca, leaf)).toMatch(/leaf\.pem: OK/);
  });

  it("stay bound by the root's name constraints through the issuer", async () => {
    const minter = new LeafMinter(constrained);
    expect(opensslVerify(constrained, minter.leafFor("quay.test"))).toMatch(/leaf\.pem: OK/);
    expect(opensslVerify(constrained, minter.leafFor("evil.test"))).toMatch(/permitted subtree violation/);
  });

  it("are accepted by a Node TLS client that trusts only the root", async () => {
    const leaf = new LeafMinter(ca).leafFor("localhost");
    const server = createServer({ key: leaf.keyPem, cert: leaf.chainPem }, (socket) => socket.end("hello"));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const port = (server.address() as { port: number }).port;
      const reply = await new Promise<string>((resolve, reject) => {
        const socket: TLSSocket = connect({ host: "127.0.0.1", port, servername: "localhost", ca: ca.certPem }, () => {
          let data = "";
          socket.on("data", (d: Buffer) => (data += d.toString()));
          socket.on("end", () => resolve(data));
        });
        socket.on("error", reject);
      });
      expect(reply).toBe("hello");
    } finally {
      server.close();
    }
  });

  it("are re-minted under a new issuer when the issuer is due, never outliving the root", async () => {
    let now = Date.now();
    const minter = new LeafMinter(ca, 10, () => now);
    const first = minter.leafFor("quay.io");
    expect(minter.leafFor("quay.io")).toBe(first);
    expect(minter.leafFor("QUAY.io")).toBe(first);
    now += 3 * DAY;
    expect(minter.leafFor("quay.io")).toBe(first);
    now += 1 * DAY + 1;
    const second = minter.leafFor("quay.io");
    expect(second).not.toBe(first);
    expect(second.issuer).not.toBe(first.issuer);
    expect(second.issuer.notAfter).toBeGreaterThan(first.issuer.notAfter);
    expect(new X509Certificate(second.certPem).checkIssued(new X509Certificate(second.issuer.certPem))).toBe(true);
    expect(minter.minted).toBe(2);

    const rootEnd = new Date(ca.certificate.validTo).getTime();
    now = rootEnd - DAY;
    const late = minter.leafFor("late.test");
    expect(late.issuer.notAfter).toBe(rootEnd);
    expect(new Date(new X509Certificate(late.certPem).validTo).getTime()).toBe(rootEnd);
  });

  it("are kept in a bounded LRU", async () => {
    const minter = new LeafMinter(ca, 2);
    const a = minter.leafFor("a.test");
    minter.leafFor("b.test");
    minter.leafFor("a.test");
    minter.leafFor("c.test");
    expect(minter.leafFor("a.test")).toBe(a);
    expect(minter.minted).toBe(3);
    minter.leafFor("b.test");
    expect(minter.minted).toBe(4);
  });

  it("are minted once per host while fresh, whatever the case of the name", () => {
    const minter = new LeafMinter(ca);
    const leaves = ["burst.test", "BURST.test", "burst.test", "Burst.Test", "burst.test"].map((host) => minter.leafFor(host));
    expect(new Set(leaves).size).toBe(1);
    expect(minter.minted).toBe(1);
  });

  it("can name several hosts and addresses in one leaf (the mirror endpoint's), held like a host's", () => {
    const minter = new LeafMinter(ca);
    const leaf = minter.leafForNames(["Regcache.Svc", "10.96.0.50", "fd00::5"]);
    const cert = new X509Certificate(leaf.certPem);
    expect(cert.subject).toBe("CN=regcache.svc");
    expect(cert.subjectAltName).toBe("DNS:regcache.svc, IP Address:10.96.0.50, IP Address:FD00:0:0:0:0:0:0:5");
    expect(cert.checkHost("regcache.svc")).toBe("regcache.svc");
    expect(cert.checkIP("10.96.0.50")).toBe("10.96.0.50");
    expect(cert.checkIP("fd00::5")).toBe("fd00::5");
    expect(cert.checkHost("other.svc")).toBeUndefined();
    expect(opensslVerify(ca, leaf)).toMatch(/leaf\.pem: OK/);
    expect(minter.leafForNames(["regcache.svc", "10.96.0.50", "fd00::5"])).toBe(leaf);
    expect(minter.minted).toBe(1);
    const ipOnly = new X509Certificate(minter.leafForNames(["10.96.0.50"]).certPem);
    // An empty subject reads as undefined on Node 20 and "" on Node 24.
    expect(ipOnly.subject ?? "").toBe("");
    expect(ipOnly.subjectAltName).toBe("IP Address:10.96.0.50");
  });
});
