import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CaError, loadOrCreateCa, type CertificateAuthority } from "../../../src/tls/ca.js";
import { randomSerial } from "../../../src/tls/certificate-builder.js";

describe("root CA", () => {
  let dir: string;
  let ca: CertificateAuthority;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "regcache-ca-"));
    ca = await loadOrCreateCa(path.join(dir, "certs"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("is a 3072-bit RSA CA, basicConstraints critical, keyCertSign + cRLSign, 10 years, positive serial", () => {
    const cert = ca.certificate;
    expect(cert.ca).toBe(true);
    expect(cert.publicKey.asymmetricKeyDetails?.modulusLength).toBe(3072);
    const years = (new Date(cert.validTo).getTime() - new Date(cert.validFrom).getTime()) / (365.25 * 86400e3);
    expect(years).toBeGreaterThan(9.9);
    expect(years).toBeLessThan(10.1);
    expect(Number.parseInt(cert.serialNumber[0]!, 16)).toBeLessThan(8);
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(ca.created).toBe(true);
  });

  it("writes the key with mode 0600 and loads the same CA again", async () => {
    expect(statSync(path.join(dir, "certs", "ca.key")).mode & 0o777).toBe(0o600);
    const again = await loadOrCreateCa(path.join(dir, "certs"));
    expect(again.created).toBe(false);
    expect(again.certPem).toBe(ca.certPem);
  });

  it("loads an existing CA without writing to its directory, as replicas mount a read-only Secret", async () => {
    const ro = path.join(dir, "ro");
    await loadOrCreateCa(ro);
    chmodSync(path.join(ro, "ca.crt"), 0o444);
    chmodSync(path.join(ro, "ca.key"), 0o400);
    chmodSync(ro, 0o555);
    const before = statSync(ro).mtimeMs;
    try {
      const loaded = await loadOrCreateCa(ro);
      expect(loaded.created).toBe(false);
      expect(statSync(ro).mtimeMs).toBe(before);
    } finally {
      chmodSync(ro, 0o755);
    }
  });

  it("refuses a key that does not match the certificate", async () => {
    const other = path.join(dir, "other");
    const mismatched = path.join(dir, "mismatched");
    await loadOrCreateCa(other);
    await loadOrCreateCa(mismatched);
    writeFileSync(path.join(mismatched, "ca.key"), (await import("node:fs")).readFileSync(path.join(other, "ca.key")));
    await expect(loadOrCreateCa(mismatched)).rejects.toThrow(/does not match/);
  });

  it("refuses half a CA and unreadable files with a clear message", async () => {
    const half = path.join(dir, "half");
    await loadOrCreateCa(half);
    rmSync(path.join(half, "ca.key"));
    await expect(loadOrCreateCa(half)).rejects.toThrow(CaError);
    writeFileSync(path.join(half, "ca.key"), "not a key");
    await expect(loadOrCreateCa(half)).rejects.toThrow(/cannot parse CA files/);
  });

  it("of processes creating a CA in one directory at once, all use the one CA that was published", async () => {
    const shared = path.join(dir, "shared");
    const cas = await Promise.all([1, 2, 3].map(() => loadOrCreateCa(shared)));
    expect(cas.filter((c) => c.created)).toHaveLength(1);
    for (const c of cas) {
      expect(c.certPem).toBe(readFileSync(path.join(shared, "ca.crt"), "utf8"));
      expect(c.certificate.checkPrivateKey(c.key)).toBe(true);
    }
    expect(readdirSync(shared).sort()).toEqual(["ca.crt", "ca.key"]);
  }, 60_000); // three 3072-bit RSA keys: seconds of CPU on a loaded machine

  it("waits for the certificate of a key just written, and calls an old key alone incomplete", async () => {
    const source = path.join(dir, "source");
    await loadOrCreateCa(source);
    const young = path.join(dir, "young");
    mkdirSync(young);
    copyFileSync(path.join(source, "ca.key"), path.join(young, "ca.key"));
    const loading = loadOrCreateCa(young);
    await new Promise((resolve) => setTimeout(resolve, 300));
    copyFileSync(path.join(source, "ca.crt"), path.join(young, "ca.crt"));
    expect((await loading).certPem).toBe(readFileSync(path.join(source, "ca.crt"), "utf8"));
    rmSync(path.join(young, "ca.crt"));
    utimesSync(path.join(young, "ca.key"), new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    await expect(loadOrCreateCa(young)).rejects.toThrow(/CA incomplete .*ca\.crt is missing/);
  });

  it("writes Name Constraints that the TLS stack reads back", async () => {
    const constrained = await loadOrCreateCa(path.join(dir, "constrained"), { nameConstraints: ["quay.test", "docker.io"] });
    expect(constrained.permittedDomains).toEqual(["quay.test", "docker.io"]);
  });

  it("serials are positive and non-zero", () => {
    for (let i = 0; i < 200; i++) {
      const serial = randomSerial();
      expect(serial[0]! & 0x80).toBe(0);
      expect(BigInt(`0x${serial.toString("hex")}`)).toBeGreaterThan(0n);
    }
  });
});
