import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";

/** A TLS connection to `host` through the proxy's CONNECT, as a registry client opens one. */
export async function tlsThroughProxy(proxyPort: number, host: string, ca: string): Promise<TLSSocket> {
  const socket: Socket = connect(proxyPort, "127.0.0.1");
  await once(socket, "connect");
  socket.write(`CONNECT ${host}:443 HTTP/1.1\r\nHost: ${host}:443\r\n\r\n`);
  const [reply] = (await once(socket, "data")) as [Buffer];
  if (!reply.toString("latin1").startsWith("HTTP/1.1 200")) throw new Error(`CONNECT ${host} refused: ${reply.toString("latin1").split("\r\n")[0]}`);
  const tls = tlsConnect({ socket, servername: host, ca });
  await once(tls, "secureConnect");
  return tls;
}

/** Sends one HEAD on a kept-alive connection and resolves with its status once the header block is in. */
export async function head(tls: TLSSocket, host: string, path: string): Promise<number> {
  tls.write(`HEAD ${path} HTTP/1.1\r\nHost: ${host}\r\nAccept: */*\r\n\r\n`);
  let text = "";
  while (!text.includes("\r\n\r\n")) {
    const [chunk] = (await once(tls, "data")) as [Buffer];
    text += chunk.toString("latin1");
  }
  return Number(text.slice(9, 12));
}
