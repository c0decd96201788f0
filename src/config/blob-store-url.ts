import { OptionError } from "./parse.js";

/**
 * --blob-store s3://BUCKET[/PREFIX] as bucket and key prefix. Credentials never belong in it
 * (they come from the environment), so a URL that carries some is refused without being echoed.
 */
export function parseBlobStoreUrl(value: string): { bucket: string; prefix: string } {
  if (!value.startsWith("s3://")) throw new OptionError(`--blob-store must be s3://BUCKET or s3://BUCKET/PREFIX, got "${value}"`);
  const rest = value.slice("s3://".length);
  const slash = rest.indexOf("/");
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  if (bucket.includes("@")) {
    throw new OptionError("--blob-store must not carry credentials: the AWS SDK reads them from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a profile, or a role)");
  }
  // S3's rules, widened to what older buckets and compatible stores allow (capitals, underscores).
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$/.test(bucket)) {
    throw new OptionError(`--blob-store bucket must be 3 to 255 letters, digits, ".", "-" or "_", got "${bucket}"`);
  }
  const prefix = slash < 0 ? "" : rest.slice(slash + 1).replace(/\/+$/, "");
  if (prefix !== "" && !prefix.split("/").every((segment) => /^[A-Za-z0-9._-]+$/.test(segment) && segment !== "." && segment !== "..")) {
    throw new OptionError(`--blob-store prefix must be "/"-separated names of letters, digits, ".", "-" or "_", got "${prefix}"`);
  }
  return { bucket, prefix };
}
