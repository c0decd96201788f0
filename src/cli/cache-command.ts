import { Command } from "commander";
import { readAdminToken } from "../admin/admin-access.js";
import type { CachedBlob, CachedImage, RemovedDigest, RemovedImage, VerifyReport } from "../admin/cache-admin.js";
import { formatTaggedImage, parseTaggedImage } from "../admin/cache-references.js";
import { RegcacheError } from "../errors.js";
import { parseDigest } from "../oci/digest.js";
import { formatBytes } from "./format-bytes.js";
import { fetchFromProxy, figuresProxyOption, type ProxyRequestInit } from "./proxy-client.js";
import { adminTokenOption } from "./serve-options.js";

interface CommonOptions {
  proxy: string;
  adminToken?: string;
  json?: boolean;
}

/** Columns padded to their widest cell; the columns in `right` (numbers) aligned right. Pure. */
export function alignColumns(rows: string[][], right: ReadonlySet<number>): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (right.has(i) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))).join("  ").trimEnd()).join("\n") + "\n";
}

/** "12s ago", "5m ago", "3h ago", "2d ago"; "-" for never. Pure. */
export function formatAge(at: number | null, now: number): string {
  if (at === null) return "-";
  const s = Math.max(0, Math.floor((now - at) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86_400)}d ago`;
}

/** sha256: and 12 hex digits, as `docker images` shortens IDs. */
function shortDigest(digest: string): string {
  return digest.slice(0, digest.indexOf(":") + 13);
}

export function formatImages(images: CachedImage[], now: number): string {
  const rows = images.map((i) => [i.image, shortDigest(i.digest), formatBytes(i.size), formatAge(i.lastAccess, now), String(i.hits)]);
  return alignColumns([["IMAGE", "DIGEST", "SIZE", "LAST USE", "HITS"], ...rows], new Set([2, 4]));
}

export function formatBlobs(blobs: CachedBlob[], now: number): string {
  const rows = blobs.map((b) => [b.digest, formatBytes(b.size), formatAge(b.lastAccess, now), String(b.hits), b.images.join(",") || "(untagged)"]);
  return alignColumns([["DIGEST", "SIZE", "LAST USE", "HITS", "IMAGES"], ...rows], new Set([1, 3]));
}

export function formatRemovedImage(r: RemovedImage): string {
  const kept = [r.keptShared.length > 0 ? `kept ${r.keptShared.length} shared with other tags` : "", r.keptInUse.length > 0 ? `kept ${r.keptInUse.length} in use` : ""].filter(Boolean);
  return `removed ${r.image}: ${r.removed.length} files, ${formatBytes(r.freedBytes)}${kept.length > 0 ? `; ${kept.join(", ")}` : ""}\n`;
}

export function formatVerifyReport(r: VerifyReport): string {
  const lines = [`checked ${r.checked} files (${formatBytes(r.bytes)}) in ${(r.durationMs / 1000).toFixed(1)} s: ${r.damaged.length} damaged, ${r.missing.length} missing`];
  for (const d of r.damaged) lines.push(`damaged  ${d.digest}  ${formatBytes(d.size)}  (quarantined; refetched on the next request)`);
  for (const d of r.missing) lines.push(`missing  ${d.digest}  ${formatBytes(d.size)}  (dropped from the index)`);
  return `${lines.join("\n")}\n`;
}

/** Whether a check found files that did not match their digest, or files the index held that were gone. Pure. */
export function verifyFoundDamage(r: VerifyReport): boolean {
  return r.damaged.length > 0 || r.missing.length > 0;
}

/** The request of `rm`'s argument: a digest alone is one cached file, anything else an image's tag. Pure. */
export function removalPath(target: string): { path: string; kind: "digest" | "image" } {
  if (parseDigest(target)) return { path: `/api/cache/blobs/${target}`, kind: "digest" };
  // Docker would read "sha256:abc" as the image library/sha256, tag abc: surely a digest cut short.
  if (/^sha(256|512):/.test(target)) throw new RegcacheError("USAGE", `"${target}" is not a whole digest (sha256:<64 hex>); \`regcache cache ls --blobs\` lists them in full`);
  try {
    return { path: `/api/cache/images/${formatTaggedImage(parseTaggedImage(target))}`, kind: "image" };
  } catch (err) {
    throw new RegcacheError("USAGE", `${(err as Error).message} (an image is HOST/REPOSITORY:TAG as \`regcache cache ls\` lists it; a digest is sha256:<64 hex>)`);
  }
}

async function ask(opts: CommonOptions, path: string, init: ProxyRequestInit = {}): Promise<unknown> {
  const headers: Record<string, string> = opts.adminToken === undefined ? {} : { authorization: `Bearer ${readAdminToken(opts.adminToken)}` };
  return JSON.parse(await fetchFromProxy(opts.proxy, path, { ...init, headers })) as unknown;
}

function print(opts: CommonOptions, body: unknown, human: () => string): void {
  process.stdout.write(opts.json ? `${JSON.stringify(body, null, 2)}\n` : human());
}

function withCommonOptions(command: Command): Command {
  return command
    .addOption(figuresProxyOption("the regcache to ask"))
    .addOption(adminTokenOption("file holding the token the proxy was given with its own --admin-token"))
    .option("--json", "print the API's JSON answer");
}

/** `regcache cache ls|rm|verify`: the cache admin API (docs/operations.md, "Cache admin API") from a terminal. */
export function cacheCommand(): Command {
  const cache = new Command("cache").description("list, remove and verify what a running regcache has cached");
  withCommonOptions(cache.command("ls").description("list cached images (tags clients pulled through regcache), or with --blobs every cached digest"))
    .option("--blobs", "list every cached digest, with the tags that name it")
    .action(async (opts: CommonOptions & { blobs?: boolean }) => {
      const body = await ask(opts, opts.blobs ? "/api/cache/blobs" : "/api/cache/images");
      print(opts, body, () => (opts.blobs ? formatBlobs((body as { blobs: CachedBlob[] }).blobs, Date.now()) : formatImages((body as { images: CachedImage[] }).images, Date.now())));
    });
  withCommonOptions(cache.command("rm").description("remove an image (its manifests and the blobs no other cached tag uses) or one digest"))
    .argument("<image-or-digest>", "HOST/REPOSITORY:TAG as `cache ls` lists it (Docker's short forms work), or sha256:<hex>")
    .action(async (target: string, opts: CommonOptions) => {
      const { path, kind } = removalPath(target);
      const body = await ask(opts, path, { method: "DELETE" });
      print(opts, body, () => (kind === "digest" ? `removed ${(body as RemovedDigest).digest}: ${formatBytes((body as RemovedDigest).size)}\n` : formatRemovedImage(body as RemovedImage)));
    });
  withCommonOptions(cache.command("verify").description("hash every cached file now; damaged ones are quarantined and refetched when next asked for; exits 1 when any was damaged or missing"))
    .action(async (opts: CommonOptions) => {
      const report = (await ask(opts, "/api/cache/verify", { method: "POST", untimed: true })) as VerifyReport;
      print(opts, report, () => formatVerifyReport(report));
      // A check that found the cache damaged fails, so that a script or cron job notices.
      if (verifyFoundDamage(report)) process.exitCode = 1;
    });
  return cache;
}
