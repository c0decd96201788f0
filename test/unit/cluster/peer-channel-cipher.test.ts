import { mkdtempSync, rmSync } from "node:fs";
import type { Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { connect, type TLSSocket } from "node:tls";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PeerClient } from "../../../src/cluster/peer-client.js";
import { mintPeerIdentity, PEER_CIPHERS, withAes128First, type PeerIdentity } from "../../../src/cluster/peer-identity.js";
import { createPeerServer, type PeerServices } from "../../../src/cluster/peer-server.js";
import { RefusalLog } from "../../../src/cluster/refusal-log.js";
import { loadOrCreateCa } from "../../../src/tls/ca.js";

/** The suite a TLS 1.3 client connecting to the peer server with these ciphers ends up with. */
function negotiated(port: number, identity: PeerIdentity, ciphers?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let suite = "";
    const socket = connect({ host: "127.0.0.1", port, ca: identity.caPem, cert: identity.certPem, key: identity.keyPem, ciphers, checkServerIdentity: () => undefined }, () => {
      suite = socket.getCipher().standardName;
      socket.end();
    });
    // Settled once the server closed its side too, so its handshake is over before the next test.
    socket.on("close", () => resolve(suite));
    socket.on("error", reject);
  });
}

describe("the peer channel's cipher suite", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "regcache-peer-cipher-"));
  let identity: PeerIdentity;
  let server: Server;
  let port: number;
  beforeAll(async () => {
    identity = mintPeerIdentity(await loadOrCreateCa(dir));
    const logger = pino({ level: "silent" });
    // The health endpoint, the only one asked here, needs none of the services.
    server = createPeerServer(identity, {} as PeerServices, logger, new RefusalLog(logger));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  it("is AES-128-GCM, even for a client that lists Node's defaults (AES-256-GCM first)", async () => {
    expect(PEER_CIPHERS.split(":")[0]).toBe("TLS_AES_128_GCM_SHA256");
    expect(await negotiated(port, identity)).toBe("TLS_AES_128_GCM_SHA256");
    expect(await negotiated(port, identity, PEER_CIPHERS)).toBe("TLS_AES_128_GCM_SHA256");
  });

  it("keeps every other suite of Node's list, and adds none the list leaves out (--tls-cipher-list)", () => {
    expect(withAes128First("TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256:HIGH")).toBe("TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:HIGH");
    expect(withAes128First("TLS_AES_256_GCM_SHA384:ECDHE-ECDSA-AES256-GCM-SHA384")).toBe("TLS_AES_256_GCM_SHA384:ECDHE-ECDSA-AES256-GCM-SHA384");
  });

  it("still accepts a replica that offers only AES-256-GCM", async () => {
    expect(await negotiated(port, identity, "TLS_AES_256_GCM_SHA384")).toBe("TLS_AES_256_GCM_SHA384");
  });

  it("is what the peer client's requests travel over", async () => {
    const suites: string[] = [];
    server.on("secureConnection", (socket: TLSSocket) => suites.push(socket.getCipher().standardName));
    const client = new PeerClient(identity);
    await expect(client.health(`127.0.0.1:${port}`)).resolves.toBeUndefined();
    await client.destroy();
    expect(suites).toEqual(["TLS_AES_128_GCM_SHA256"]);
  });
});
