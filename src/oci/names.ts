/** distribution/reference grammar for repository names (OCI distribution spec, "Pulling manifests"). */
const NAME = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;

/** The spec limits a name to 255 characters including the registry host; a request path's name is bounded alike. */
export const MAX_NAME_LENGTH = 255;

/** A repository name ("library/alpine") by the grammar alone; callers bound the length. Pure. */
export function isRepositoryName(name: string): boolean {
  return NAME.test(name);
}

/** A tag ("3.20", "latest"): at most 128 characters, not starting with "." or "-". Pure. */
export function isTag(tag: string): boolean {
  return TAG.test(tag);
}
