import { createServer, type Server } from "node:https";
import { mintPeerIdentity } from "../../../src/cluster/peer-identity.js";
import { loadExistingCa } from "../../../src/tls/ca.js";

/** How a fake owner misbehaves while it sends a blob's bytes. */
export type PeerFault = "wrong-byte" | "early-close";

/**
 * A replica's peer that holds a certificate from the shared CA, as a real one does, and answers every
 * fill with the bytes it is given, spoilt as told: one byte flipped under the full length, or the
 * connection closed halfway. What the replica asking it does with that is what a test checks.
 */
export class FakePeer {
  private server: Server | undefined;

  constructor(
    private readonly certsDir: string,
    private readonly bytes: Buffer,
    private readonly fault: PeerFault,
  ) {}

  async start(port: number): Promise<void> {
    const identity = mintPeerIdentity(await loadExistingCa(this.certsDir));
    this.server = createServer({ cert: identity.certPem, key: identity.keyPem, ca: identity.caPem, requestCert: true, rejectUnauthorized: true }, (req, res) => {
      if (req.url === "/peer/v1/health") return void res.end("ok\n");
      const digest = new URL(req.url ?? "/", "https://peer").searchParams.get("digest") ?? "";
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": this.bytes.length, "docker-content-digest": digest, "x-cache": "HIT" });
      const half = Math.floor(this.bytes.length / 2);
      if (this.fault === "early-close") {
        res.write(this.bytes.subarray(0, half), () => res.destroy());
        return;
      }
      const spoilt = Buffer.from(this.bytes);
      spoilt[half] = spoilt[half]! ^ 0x20;
      res.end(spoilt);
    });
    await new Promise<void>((resolve) => this.server!.listen(port, "127.0.0.1", resolve));
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve) ?? resolve(undefined));
  }
}
