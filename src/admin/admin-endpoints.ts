import type { IncomingMessage, ServerResponse } from "node:http";
import { RegcacheError } from "../errors.js";
import { errorAnswer } from "../registry/errors.js";
import type { Logger } from "../log/logger.js";
import { sendJson, type EndpointRoute } from "../proxy/own-endpoints.js";
import { parseDigest } from "../oci/digest.js";
import type { AdminAccess } from "./admin-access.js";
import type { CacheAdmin } from "./cache-admin.js";
import { parseTaggedImage, type TaggedImage } from "./cache-references.js";

const PREFIX = "/api/cache";

/**
 * The cache admin API on the proxy port (docs/operations.md, "Cache admin API"):
 *   GET    /api/cache/images                        tags, with their digest, size, last use, hits
 *   DELETE /api/cache/images/<host>/<repository>:<tag>
 *   GET    /api/cache/blobs                         every cached digest
 *   DELETE /api/cache/blobs/<digest>
 *   POST   /api/cache/verify                        hash every cached file now
 * Every path under /api/cache is refused before it is looked at unless AdminAccess allows the request.
 */
export function cacheAdminRoutes(admin: CacheAdmin, access: AdminAccess, logger: Logger): EndpointRoute {
  return async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    const path = (req.url ?? "/").split("?")[0]!;
    if (path !== PREFIX && !path.startsWith(`${PREFIX}/`)) return false;
    const refusal = access.refusal(req);
    if (refusal) {
      logger.warn({ method: req.method, path: path.slice(0, 200), client: req.socket.remoteAddress, status: refusal.status }, "cache admin request refused");
      sendJson(res, refusal.status, { error: refusal.message }, refusal.headers);
      return true;
    }
    const rest = path.slice(PREFIX.length);
    const audit = (fields: object, msg: string): void => logger.info({ client: req.socket.remoteAddress, ...fields }, msg);
    if (rest === "/images") {
      if (allow(req, res, "GET", "HEAD")) sendJson(res, 200, { images: await admin.images() });
    } else if (rest === "/blobs") {
      if (allow(req, res, "GET", "HEAD")) sendJson(res, 200, { blobs: await admin.blobs() });
    } else if (rest === "/verify") {
      if (!allow(req, res, "POST")) return true;
      const report = await admin.verify();
      audit({ checked: report.checked, damaged: report.damaged.length, missing: report.missing.length, durationMs: report.durationMs }, "cache admin: verified every cached file");
      sendJson(res, 200, report);
    } else if (rest.startsWith("/images/")) {
      if (!allow(req, res, "DELETE")) return true;
      let image: TaggedImage;
      try {
        image = parseTaggedImage(decodeImagePath(rest.slice("/images/".length)));
      } catch (err) {
        const answer = errorAnswer(err);
        sendJson(res, answer.status, { error: answer.message });
        return true;
      }
      const removed = await admin.removeImage(image);
      if (!removed) {
        sendJson(res, 404, { error: `no tag answer is recorded for ${image.host}/${image.name}:${image.tag}; \`regcache cache ls\` lists what is` });
        return true;
      }
      audit({ image: removed.image, removed: removed.removed.length, freedBytes: removed.freedBytes, keptShared: removed.keptShared.length, keptInUse: removed.keptInUse.length }, "cache admin: image removed");
      sendJson(res, 200, removed);
    } else if (rest.startsWith("/blobs/")) {
      if (!allow(req, res, "DELETE")) return true;
      const digest = parseDigest(rest.slice("/blobs/".length));
      if (!digest) {
        sendJson(res, 400, { error: "a digest is sha256:<64 hex> or sha512:<128 hex>" });
        return true;
      }
      const outcome = await admin.removeBlob(digest);
      if (outcome.kind === "not-cached") sendJson(res, 404, { error: `${digest.value} is not cached` });
      else if (outcome.kind === "in-use") sendJson(res, 409, { error: `${digest.value} is being read or written; try again when it is not` });
      else {
        audit({ digest: digest.value, freedBytes: outcome.removed.size }, "cache admin: digest removed");
        sendJson(res, 200, outcome.removed);
      }
    } else {
      sendJson(res, 404, { error: `no such endpoint: ${path}` });
    }
    return true;
  };
}

/** Answers 405 unless the method is one of `methods`. */
function allow(req: IncomingMessage, res: ServerResponse, ...methods: string[]): boolean {
  if (methods.includes(req.method ?? "")) return true;
  sendJson(res, 405, { error: `${req.method} is not supported here` }, { allow: methods.join(", ") });
  return false;
}

function decodeImagePath(encoded: string): string {
  try {
    return decodeURIComponent(encoded);
  } catch (err) {
    throw new RegcacheError("IMAGE_REFERENCE", "the path is not a valid percent-encoded image reference", { cause: err });
  }
}
