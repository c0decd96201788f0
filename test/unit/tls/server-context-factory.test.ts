import { X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { connect, createSecureContext, createServer, type SecureContext } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadOrCreateCa, type CertificateAuthority } from "../../../src/tls/ca.js";
import { LeafMinter } from "../../../src/tls/leaf-minter.js";
import { ServerContextFactory } from "../../../src/tls/server-context-factory.js";

/** What a client trusting only the root sees when it connects for `host` to a server using `context`. */
async function served(ca: CertificateAuthority, context: SecureContext, host: string): Promise<{ subjectAltName: string | undefined; reply: string }> {
  // As regcache's interceptor does, the context is the connection's whole configuration.
  const server = createServer({ SNICallback: (_name, use) => use(null, context) }, (socket) => socket.end("hello"));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const port = (server.address() as { port: number }).port;
    return await new Promise((resolve, reject) => {
      const socket = connect({ host: "127.0.0.1", port, servername: host, ca: ca.certPem }, () => {
        const subjectAltName = new X509Certificate(socket.getPeerX509Certificate()!.raw).subjectAltName;
        let reply = "";
        socket.on("data", (d: Buffer) => (reply += d.toString()));
        socket.on("end", () => resolve({ subjectAltName, reply }));
      });
      socket.on("error", reject);
    });
  } finally {
    server.close();
  }
}

/** Lets the factory make its spares (one per 100 ms timer). */
async function idle(spares: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, spares * 100 + 50));
}

describe("ServerContextFactory", () => {
  let dir: string;
  let ca: CertificateAuthority;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "regcache-contexts-"));
    ca = await loadOrCreateCa(path.join(dir, "certs"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("serves each host its own leaf, from contexts made ahead with the shared key, and never hands one out twice", async () => {
    const minter = new LeafMinter(ca);
    const factory = new ServerContextFactory();
    try {
      const hosts = ["a.test", "b.test", "c.test", "d.test", "e.test", "f.test", "g.test"];
      const contexts: SecureContext[] = [];
      for (const host of hosts) {
        const leaf = minter.leafFor(host);
        contexts.push(factory.contextFor(leaf.keyPem, leaf.chainPem));
        await idle(host === "b.test" ? 0 : 1);
      }
      expect(new Set(contexts).size).toBe(hosts.length);
      // Every context still serves its own host: a later one did not overwrite an earlier one's certificate.
      for (const [i, host] of hosts.entries()) expect(await served(ca, contexts[i]!, host)).toEqual({ subjectAltName: `DNS:${host}`, reply: "hello" });
    } finally {
      factory.close();
    }
  });

  it("finds the native setCert it relies on in this Node.js (else every context takes the slower public path)", () => {
    expect(typeof (createSecureContext({}).context as { setCert?: unknown }).setCert).toBe("function");
  });

  it("survives a key OpenSSL refuses: the caller gets the error, the spares' timer does not crash the process", async () => {
    const factory = new ServerContextFactory();
    try {
      expect(() => factory.contextFor("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "")).toThrow();
      await idle(2);
      const leaf = new LeafMinter(ca).leafFor("a.test");
      expect(await served(ca, factory.contextFor(leaf.keyPem, leaf.chainPem), "a.test")).toEqual({ subjectAltName: "DNS:a.test", reply: "hello" });
    } finally {
      factory.close();
    }
  });

  it("drops spare contexts made with a key that is no longer the leaves' (another minter)", async () => {
    const factory = new ServerContextFactory();
    try {
      const first = new LeafMinter(ca).leafFor("a.test");
      factory.contextFor(first.keyPem, first.chainPem);
      await idle(4);
      const other = new LeafMinter(ca).leafFor("b.test");
      expect(other.keyPem).not.toBe(first.keyPem);
      expect(await served(ca, factory.contextFor(other.keyPem, other.chainPem), "b.test")).toEqual({ subjectAltName: "DNS:b.test", reply: "hello" });
    } finally {
      factory.close();
    }
  });
});
