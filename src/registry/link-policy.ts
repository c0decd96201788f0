import { isUnavailableStatus } from "../upstream/upstream-error.js";
/**
 * Which cached content a request may get. Pure: the rules of SECURITY.md's table, tested
 * exhaustively (test/unit/registry/link-policy.test.ts).
 *
 * The cache shares disk across repositories and registries, never visibility: a digest is
 * served in (host, repository) only where upstream confirmed it (a link), and only to a
 * client that may read that repository.
 */

/** What upstream's answer to a HEAD for a digest in a repository says about that pair. */
export type Confirmation = "linked" | "refused" | "unavailable";

/**
 * 2xx, or a redirect to where the bytes are: the repository has the digest. 5xx, 429 or no
 * answer: nothing is known. Anything else (401, 403, 404...): this client may not have it there.
 */
export function classifyConfirmation(status: number | "unreachable"): Confirmation {
  if (status === "unreachable" || isUnavailableStatus(status)) return "unavailable";
  if (status >= 200 && status < 400) return "linked";
  return "refused";
}

export type CachedContentStep =
  /** Linked: settle access as for any content of the repository (public verdict, client check, offline policy). */
  | "authorize"
  /** Not linked: ask upstream with the client's credentials before serving anything. */
  | "confirm";

export function cachedContentStep(linked: boolean): CachedContentStep {
  return linked ? "authorize" : "confirm";
}
