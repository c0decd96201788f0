import type { IncomingMessage } from "node:http";

/**
 * Tells, after an upstream request failed, whether the client caused it by going away
 * while its body was still arriving. Node aborts a request for two reasons: its socket
 * closed (the client left), or a consumer destroyed it (undici, because upstream failed).
 * In the first case the socket is already closed when "aborted" fires; in the second the
 * request destroys the socket only after firing it.
 */
export function watchClientAbort(req: IncomingMessage): () => boolean {
  let clientLeft = false;
  req.once("aborted", () => {
    clientLeft = req.socket?.destroyed !== false;
  });
  return () => clientLeft;
}
