import type { ServerResponse } from "node:http";
import { DigestMismatchError, DownloadAbortedError, SizeMismatchError } from "../cache/download.js";
import type { CutReason } from "../registry/request-context.js";

/**
 * Why regcache cut `res` short, from the error it was destroyed with (a body whose bytes did not
 * match their digest, a short or overlong body, a download given up, a failed read); undefined
 * when it was completed, or closed by the client.
 */
export function responseCut(res: ServerResponse): { cut: CutReason; cutReason: string } | undefined {
  const err = res.errored;
  if (!err || res.writableFinished) return undefined;
  const cut: CutReason = err instanceof DigestMismatchError ? "digest-mismatch" : err instanceof SizeMismatchError ? "size-mismatch" : err instanceof DownloadAbortedError ? "download-aborted" : "source-failed";
  return { cut, cutReason: err.message };
}
