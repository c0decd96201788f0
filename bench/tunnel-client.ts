import { once } from "node:events";
import type { TLSSocket } from "node:tls";

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
