import { X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isPeerCertificate, mintPeerIdentity, PEER_URI } from "../../../src/cluster/peer-identity.js";
import { loadOrCreateCa, type CertificateAuthority } from "../../../src/tls/ca.js";
import { LeafMinter } from "../../../src/tls/leaf-minter.js";

describe("peer identity", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "regcache-peer-id-"));
  let ca: CertificateAuthority;
  beforeAll(async () => {
    ca = await loadOrCreateCa(dir, { nameConstraints: ["quay.test"] });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("is signed by the root CA, for client and server auth, with the peer URI", () => {
    const identity = mintPeerIdentity(ca);
    const cert = new X509Certificate(identity.certPem);
    expect(cert.verify(ca.certificate.publicKey)).toBe(true);
    expect(cert.checkIssued(ca.certificate)).toBe(true);
    expect(cert.subjectAltName).toBe(`URI:${PEER_URI}`);
    expect(cert.keyUsage).toEqual(expect.arrayContaining(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]));
    expect(isPeerCertificate(cert)).toBe(true);
  });

  it("a registry leaf from the same CA is not a peer", async () => {
    const leaf = await new LeafMinter(ca).leafFor("quay.test");
    expect(isPeerCertificate(new X509Certificate(leaf.certPem))).toBe(false);
    expect(isPeerCertificate(undefined)).toBe(false);
  });
});
