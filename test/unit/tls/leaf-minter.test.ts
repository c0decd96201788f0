import { X509Certificate } from "node:crypto";
import { mkdtempSync, statSync, writeFileSync, chmodSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CaError, loadOrCreateCa, type CertificateAuthority } from "../../../src/tls/ca.js";
import { randomSerialHex } from "../../../src/tls/certificate-builder.js";
import { LeafMinter } from "../../../src/tls/leaf-minter.js";

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

  it("writes Name Constraints that the TLS stack reads back", async () => {
    const constrained = await loadOrCreateCa(path.join(dir, "constrained"), { nameConstraints: ["quay.test", "docker.io"] });
    expect(constrained.permittedDomains).toEqual(["quay.test", "docker.io"]);
  });

  describe("leaves", () => {
    it("have a positive serial, the right SAN, serverAuth, and verify against the CA", async () => {
      const minter = new LeafMinter(ca);
      const leaf = new X509Certificate((await minter.leafFor("registry-1.docker.io")).certPem);
      expect(leaf.subjectAltName).toBe("DNS:registry-1.docker.io");
      expect(leaf.checkIssued(ca.certificate)).toBe(true);
      expect(leaf.verify(ca.certificate.publicKey)).toBe(true);
      expect(leaf.ca).toBe(false);
      expect(leaf.keyUsage).toContain("1.3.6.1.5.5.7.3.1");
      expect(Number.parseInt(leaf.serialNumber[0]!, 16)).toBeLessThan(8);
      expect(leaf.checkHost("registry-1.docker.io")).toBe("registry-1.docker.io");
    });

    it("use an IP SAN for IP literals", async () => {
      const leaf = new X509Certificate((await new LeafMinter(ca).leafFor("10.1.2.3")).certPem);
      expect(leaf.subjectAltName).toBe("IP Address:10.1.2.3");
      expect(leaf.checkIP("10.1.2.3")).toBe("10.1.2.3");
    });

    it("live at most a year and are re-minted well before expiry", async () => {
      let now = Date.now();
      const minter = new LeafMinter(ca, 10, () => now);
      const first = await minter.leafFor("quay.io");
      const cert = new X509Certificate(first.certPem);
      expect(new Date(cert.validTo).getTime() - now).toBeLessThanOrEqual(366 * 86400e3);
      expect(await minter.leafFor("quay.io")).toBe(first);
      expect(minter.freshLeaf("QUAY.io")).toBe(first);
      now += 61 * 86400e3;
      expect(minter.freshLeaf("quay.io")).toBeUndefined();
      const second = await minter.leafFor("quay.io");
      expect(second).not.toBe(first);
      expect(second.notAfter).toBeGreaterThan(first.notAfter);
      expect(minter.minted).toBe(2);
    });

    it("are kept in a bounded LRU", async () => {
      const minter = new LeafMinter(ca, 2);
      const a = await minter.leafFor("a.test");
      await minter.leafFor("b.test");
      await minter.leafFor("a.test");
      await minter.leafFor("c.test");
      expect(await minter.leafFor("a.test")).toBe(a);
      expect(minter.minted).toBe(3);
      await minter.leafFor("b.test");
      expect(minter.minted).toBe(4);
    });

    it("are minted once for concurrent requests for a new host", async () => {
      const minter = new LeafMinter(ca);
      const leaves = await Promise.all(Array.from({ length: 5 }, () => minter.leafFor("burst.test")));
      expect(new Set(leaves).size).toBe(1);
      expect(minter.minted).toBe(1);
    });
  });

  it("serials are positive and non-zero", () => {
    for (let i = 0; i < 200; i++) {
      const serial = randomSerialHex();
      expect(Number.parseInt(serial.slice(0, 2), 16) & 0x80).toBe(0);
      expect(BigInt(`0x${serial}`)).toBeGreaterThan(0n);
    }
  });
});
