import { servedType, type TypedEntry } from "../cache/manifest-types.js";
import { acceptNames } from "./accept.js";

/** Why cached content does not answer a request that regcache forwards instead (see ForwardReason). */
export type NotFromCache =
  /** Cached as a manifest and asked for as a blob, or the other way round: registries answer those by what the repository holds. */
  | "kind"
  /** A manifest whose type in this repository is not known yet: the upstream is asked first (a confirmation teaches it). */
  | "media-type"
  /** The client's Accept does not name the manifest's type (accept.ts: acceptNames). */
  | "accept";

/** `mediaType` with "accept": what the cached bytes are served as when upstream cannot answer. */
export type CachedAnswer = { kind: "serve"; mediaType: string } | { kind: "forward"; reason: Exclude<NotFromCache, "accept"> } | { kind: "forward"; reason: "accept"; mediaType: string };

/**
 * Whether a cached entry answers a request for `target` in "host/repository" exactly as the
 * registry would, and as what type (manifest-types.ts). Pure.
 */
export function cachedAnswer(targetKind: "blob" | "manifest", entry: Pick<TypedEntry, "kind" | "mediaType" | "linkTypes">, hostRepository: string, acceptSet: readonly string[]): CachedAnswer {
  if (entry.kind !== targetKind) return { kind: "forward", reason: "kind" };
  const mediaType = servedType(entry, hostRepository);
  if (mediaType === undefined) return { kind: "forward", reason: "media-type" };
  if (targetKind === "manifest" && !acceptNames(acceptSet, mediaType)) return { kind: "forward", reason: "accept", mediaType };
  return { kind: "serve", mediaType };
}
