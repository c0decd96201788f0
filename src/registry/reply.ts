import type { OutgoingHttpHeaders, ServerResponse } from "node:http";
import { pipeline, Readable } from "node:stream";
import type { RangeSource } from "../cache/range-source.js";
import { sendRange } from "../cache/range-sender.js";
import { registryErrorBody, type RegistryErrorCode } from "../oci/error-body.js";
import type { UpstreamResponse } from "../upstream/client.js";

export type ReplyHeaders = OutgoingHttpHeaders;

/**
 * A reply's body: none; a few bytes; an upstream body relayed as it is; or bytes [start, end]
 * of a cached file, a download or a body streamed through, opened only when they are sent.
 */
export type ReplyBody =
  | { kind: "none" }
  | { kind: "text"; text: string }
  | { kind: "upstream"; body: UpstreamResponse["body"] }
  | { kind: "range"; start: number; end: number; open: (start: number, end: number) => RangeSource | Readable };

/** A registry answer as a value: handlers and policies build one, writeReply sends it. */
export interface Reply {
  status: number;
  headers: ReplyHeaders;
  body: ReplyBody;
}

/** Every answer regcache makes itself says which registry API it speaks, as distribution does. */
export const API_VERSION_HEADER = { "docker-distribution-api-version": "registry/2.0" };

/** A registry-style JSON error (OCI distribution spec, "Error Codes"). */
export function errorReply(status: number, code: RegistryErrorCode, message: string, extraHeaders: ReplyHeaders = {}): Reply {
  const text = registryErrorBody(code, message);
  return {
    status,
    headers: { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text), ...API_VERSION_HEADER, ...extraHeaders },
    body: { kind: "text", text },
  };
}

/**
 * Sends a reply: the one place registry answers reach the client. With headers already out
 * (a failure mid-body), the connection is cut instead, so the client sees a truncated body and
 * never a complete wrong one. A HEAD gets the headers alone; an upstream body is then drained.
 */
export function writeReply(res: ServerResponse, reply: Reply, method: string | undefined): void {
  const body = reply.body;
  if (res.headersSent) {
    res.destroy();
    if (body.kind === "upstream") body.body.destroy();
    return;
  }
  res.writeHead(reply.status, reply.headers);
  switch (body.kind) {
    case "none":
      res.end();
      return;
    case "text":
      res.end(method === "HEAD" ? undefined : body.text);
      return;
    case "upstream":
      if (method === "HEAD") {
        body.body.dump().catch(() => undefined);
        res.end();
      } else pipeline(body.body, res, () => undefined);
      return;
    case "range": {
      if (method === "HEAD" || body.end < body.start) {
        res.end();
        return;
      }
      const source = body.open(body.start, body.end);
      if (source instanceof Readable) pipeline(source, res, () => undefined);
      else sendRange(source, body.start, body.end, res);
    }
  }
}
