import { RegcacheError } from "../errors.js";
import { parseDigest } from "./digest.js";
import { isRepositoryName, isTag } from "./names.js";

/** An image reference as a user writes it, resolved to where a registry client fetches it from. */
export interface ImageReference {
  /** Registry host as dialled (docker.io becomes registry-1.docker.io). */
  host: string;
  port: number;
  name: string;
  /** A tag, or a digest ("sha256:..."). */
  reference: string;
  /** The reference as the user wrote it, for messages. */
  original: string;
}

const DOCKER_HUB_ALIASES = new Set(["docker.io", "index.docker.io", "registry-1.docker.io"]);

export class ImageReferenceError extends RegcacheError {
  constructor(reference: string, why: string) {
    super("IMAGE_REFERENCE", `invalid image reference "${reference}": ${why}`);
  }
}

/**
 * Parses references the way Docker and containerd do (distribution/reference):
 * the first component is a registry when it has a dot or a port or is "localhost";
 * otherwise the image is on Docker Hub, under "library/" when it has no namespace.
 * Pure.
 */
export function parseImageReference(input: string): ImageReference {
  const original = input.trim();
  if (original.length === 0 || original.length > 512) throw new ImageReferenceError(original, "empty or too long");
  let rest = original;
  let reference = "latest";
  const at = rest.indexOf("@");
  if (at >= 0) {
    reference = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!parseDigest(reference)) throw new ImageReferenceError(original, "digest must be sha256:<64 hex> or sha512:<128 hex>");
    const colon = rest.lastIndexOf(":");
    if (colon > rest.lastIndexOf("/")) rest = rest.slice(0, colon);
  } else {
    const colon = rest.lastIndexOf(":");
    if (colon > rest.lastIndexOf("/")) {
      reference = rest.slice(colon + 1);
      rest = rest.slice(0, colon);
      if (!isTag(reference)) throw new ImageReferenceError(original, "invalid tag");
    }
  }
  const slash = rest.indexOf("/");
  const first = slash >= 0 ? rest.slice(0, slash) : "";
  let authority = "docker.io";
  let name = rest;
  if (slash >= 0 && (first.includes(".") || first.includes(":") || first === "localhost")) {
    authority = first;
    name = rest.slice(slash + 1);
  }
  const portMatch = /^(.*):(\d{1,5})$/.exec(authority);
  const hostPart = portMatch ? portMatch[1]! : authority;
  const port = portMatch ? Number(portMatch[2]) : 443;
  let host = hostPart.toLowerCase();
  if (DOCKER_HUB_ALIASES.has(host)) {
    host = "registry-1.docker.io";
    if (!name.includes("/")) name = `library/${name}`;
  }
  if (!isRepositoryName(name)) throw new ImageReferenceError(original, "invalid repository name");
  return { host, port, name, reference, original };
}
