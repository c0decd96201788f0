import { readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { EndpointRoute } from "./own-endpoints.js";

const MARKER = "# @regcache-defaults@";
const SAFE_AUTHORITY = /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/** deploy/node-setup.sh, shipped beside dist/ in the package and the image. */
export function loadSetupScript(): string {
  return readFileSync(new URL("../../deploy/node-setup.sh", import.meta.url), "utf8");
}

/**
 * GET /setup/node.sh: the node setup script with this proxy's URL, CA download and CA
 * fingerprint pre-filled, the URL from the Host the node used to reach us (so
 * `curl .../setup/node.sh | sh` needs no arguments), and the mirror's URL when there is a mirror
 * (`mirrorUrl`, given that authority). A Host that is not a plain authority is ignored: it ends
 * up in a shell script.
 */
export function setupScriptRoute(script: string, caFingerprint: string, fallbackAuthority: () => string, mirrorUrl?: (authority: string) => string): EndpointRoute {
  return (req: IncomingMessage, res: ServerResponse): boolean => {
    if ((req.url ?? "").split("?")[0] !== "/setup/node.sh") return false;
    const host = req.headers.host ?? "";
    const authority = SAFE_AUTHORITY.test(host) ? host : fallbackAuthority();
    const proxy = `http://${authority}`;
    const mirror = mirrorUrl ? `\nDEFAULT_MIRROR='${mirrorUrl(authority)}'` : "";
    const body = script.replace(MARKER, `DEFAULT_PROXY='${proxy}'\nDEFAULT_CA='${proxy}/ca.crt'\nDEFAULT_CA_SHA256='${caFingerprint}'${mirror}`);
    res.writeHead(200, { "content-type": "text/x-shellscript; charset=utf-8", "content-length": Buffer.byteLength(body), "cache-control": "no-store" });
    res.end(req.method === "HEAD" ? undefined : body);
    return true;
  };
}
