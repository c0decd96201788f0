import type { HostPort } from "../config/parse.js";
import type { RegistryErrorCode } from "../oci/error-body.js";
import { parseConnectTarget } from "../proxy/connect-policy.js";

/** Docker Hub's API host: containerd maps "docker.io" to it for the registry itself, and so does the mirror. */
export const HUB_API_HOST = "registry-1.docker.io";
/** What image references call Docker Hub (distribution/reference); its API is served by HUB_API_HOST. */
const HUB_NAMES = new Set(["docker.io", "index.docker.io"]);

/** The upstream a mirror request is for, and the request target as that upstream gets it. */
export interface MirrorTarget {
  host: string;
  port: number;
  /** The path without the upstream's segment, the query without `ns`: what a proxy client would have sent. */
  url: string;
  /** How the upstream was named, for the log. */
  namedBy: "ns" | "path" | "default";
}

export type MirrorTargetResult =
  | { ok: true; target: MirrorTarget }
  | { ok: false; status: 400 | 404; code: RegistryErrorCode; message: string };

/**
 * A registry host as image references name it, HOST or HOST:PORT ([v6]:PORT), lowercase; port 443
 * when none is given; "docker.io" is Hub's API host. Undefined when it is not one. Pure.
 */
export function parseUpstreamAuthority(value: string): HostPort | undefined {
  // A bare IPv6 address ("::1") is not an authority; "[::1]" and "[::1]:5000" are.
  const hasPort = /^(?:\[[^\]]*\]|[^:[\]]*):\d{1,5}$/.test(value);
  const parsed = parseConnectTarget(hasPort ? value : `${value}:443`);
  if (!parsed) return undefined;
  return parsed.port === 443 && HUB_NAMES.has(parsed.host) ? { host: HUB_API_HOST, port: 443 } : parsed;
}

/**
 * distribution/reference's rule for the first component of a name: a registry host when it has a
 * dot or a colon, is "localhost", or has capitals (which repository names never have).
 */
function looksLikeHost(segment: string): boolean {
  return /[.:]/.test(segment) || segment === "localhost" || segment !== segment.toLowerCase();
}

/**
 * A registry named in the path: HOST, HOST:PORT, or HOST_PORT, since an image reference cannot
 * hold a colon after its first component, so containers/image cannot send `quay.test:5000` there.
 */
function pathAuthority(segment: string): HostPort | undefined {
  return parseUpstreamAuthority(segment.toLowerCase().replace(/_(\d{1,5})$/, ":$1"));
}

function sameAuthority(a: HostPort, b: HostPort): boolean {
  return a.host === b.host && a.port === b.port;
}

/**
 * Which upstream a request to the mirror is for, as each runtime says it (docs/mirror-mode.md):
 * - containerd: `/v2/<name>/...?ns=<registry>`; with `override_path` and the registry in the
 *   mirror URL's path as well, `/v2/<registry>/<name>/...?ns=<registry>`;
 * - containers/image (CRI-O, podman, skopeo), a mirror location with a namespace path:
 *   `/v2/<registry>/<name>/...`, a port written `<host>_<port>` (pathAuthority);
 * - Docker (`registry-mirrors`, Docker Hub only): `/v2/<name>/...`, the default upstream.
 * Pure: the request target is only read, and the answer says what the upstream should be asked.
 */
export function parseMirrorTarget(url: string, defaultUpstream: HostPort): MirrorTargetResult {
  const queryAt = url.indexOf("?");
  const path = queryAt < 0 ? url : url.slice(0, queryAt);
  const params = new URLSearchParams(queryAt < 0 ? "" : url.slice(queryAt + 1));
  if (path !== "/v2" && !path.startsWith("/v2/")) {
    return { ok: false, status: 404, code: "UNSUPPORTED", message: `the mirror serves the registry API under /v2/ only, not ${path.slice(0, 100)}` };
  }
  const ns = params.getAll("ns");
  if (ns.length > 1) return { ok: false, status: 400, code: "NAME_INVALID", message: "ns is given more than once" };
  params.delete("ns");
  const rest = params.toString();
  const query = rest ? `?${rest}` : "";
  const segments = path.slice("/v2/".length).split("/");
  const first = segments[0] ?? "";
  let upstream: HostPort | undefined;
  let namedBy: MirrorTarget["namedBy"];
  let nameStart = 0;
  if (ns.length === 1) {
    upstream = parseUpstreamAuthority(ns[0]!.toLowerCase());
    if (!upstream) return { ok: false, status: 400, code: "NAME_INVALID", message: `ns "${ns[0]!.slice(0, 100)}" is not a registry host` };
    namedBy = "ns";
    const inPath = looksLikeHost(first) ? pathAuthority(first) : undefined;
    if (inPath && sameAuthority(inPath, upstream)) nameStart = 1;
  } else if (looksLikeHost(first)) {
    upstream = pathAuthority(first);
    if (!upstream) return { ok: false, status: 400, code: "NAME_INVALID", message: `"${first.slice(0, 100)}" is not a registry host` };
    namedBy = "path";
    nameStart = 1;
  } else {
    upstream = defaultUpstream;
    namedBy = "default";
  }
  return { ok: true, target: { host: upstream.host, port: upstream.port, url: `/v2/${segments.slice(nameStart).join("/")}${query}`, namedBy } };
}
