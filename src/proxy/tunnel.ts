import { connect, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { Dialer } from "../upstream/dialer.js";

/**
 * A plain TCP splice for hosts that are not intercepted: TLS stays end to end,
 * regcache sees neither certificates nor bytes. The dial still goes through the
 * Dialer, so --resolve and the address policy apply.
 */
export async function openTunnel(client: Duplex, head: Buffer, host: string, port: number, dialer: Dialer, connectTimeout: number): Promise<void> {
  const target = await dialer.target(host, port);
  const upstream: Socket = connect({ host: target.address, port: target.port });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => upstream.destroy(new Error(`connect to ${host}:${port} timed out`)), connectTimeout);
    upstream.once("connect", () => {
      clearTimeout(timer);
      resolve();
    });
    upstream.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
  client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
  if (head.length > 0) upstream.write(head);
  upstream.on("error", () => client.destroy());
  client.on("error", () => upstream.destroy());
  upstream.pipe(client);
  client.pipe(upstream);
}
