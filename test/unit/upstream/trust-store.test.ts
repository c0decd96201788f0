import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { rootCertificates } from "node:tls";
import { afterAll, describe, expect, it } from "vitest";
import { loadUpstreamTrust } from "../../../src/upstream/trust-store.js";

const dir = mkdtempSync(path.join(tmpdir(), "trust-store-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, content: string): string => {
  const p = path.join(dir, name);
  writeFileSync(p, content);
  return p;
};

describe("--upstream-ca files", () => {
  it("a file of PEM certificates is trusted on top of the built-in roots", () => {
    const bundle = file("bundle.pem", `# two CAs\n${rootCertificates[0]}\n${rootCertificates[1]}\n`);
    const cas = loadUpstreamTrust([bundle]);
    expect(cas.length).toBeGreaterThan(rootCertificates.length);
    expect(cas[cas.length - 1]).toContain(rootCertificates[1]);
  });

  it("a file without a certificate is refused, naming the file", () => {
    const hostname = file("hostname", "build-host-7\n");
    expect(() => loadUpstreamTrust([hostname])).toThrow(`--upstream-ca ${hostname} holds no PEM certificate (a "-----BEGIN CERTIFICATE-----" block)`);
    const key = file("key.pem", "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n");
    expect(() => loadUpstreamTrust([key])).toThrow("holds no PEM certificate");
  });

  it("a certificate block that does not parse is refused, saying which one", () => {
    const good = rootCertificates[0]!;
    const broken = good.replace(/\n([A-Za-z0-9+/]{20})/, "\n!!!!$1");
    const mixed = file("mixed.pem", `${good}\n${broken}\n`);
    expect(() => loadUpstreamTrust([mixed])).toThrow(`--upstream-ca ${mixed}: certificate 2 of 2 cannot be parsed`);
  });

  it("a missing file is refused as before", () => {
    expect(() => loadUpstreamTrust([path.join(dir, "nope.pem")])).toThrow(/cannot read --upstream-ca .*nope\.pem/);
  });
});
