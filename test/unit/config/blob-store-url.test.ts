import { describe, expect, it } from "vitest";
import { RegcacheError } from "../../../src/errors.js";
import { parseBlobStoreUrl } from "../../../src/config/blob-store-url.js";

function usageError(value: string): RegcacheError {
  try {
    parseBlobStoreUrl(value);
  } catch (err) {
    expect(err).toBeInstanceOf(RegcacheError);
    expect((err as RegcacheError).code).toBe("USAGE");
    return err as RegcacheError;
  }
  throw new Error(`"${value}" was accepted`);
}

describe("parseBlobStoreUrl (--blob-store)", () => {
  it("takes the bucket and the key prefix, without the slashes around it", () => {
    expect(parseBlobStoreUrl("s3://regcache")).toEqual({ bucket: "regcache", prefix: "" });
    expect(parseBlobStoreUrl("s3://regcache/")).toEqual({ bucket: "regcache", prefix: "" });
    expect(parseBlobStoreUrl("s3://regcache/fleet")).toEqual({ bucket: "regcache", prefix: "fleet" });
    expect(parseBlobStoreUrl("s3://my.bucket-1/fleet/eu-west_1/")).toEqual({ bucket: "my.bucket-1", prefix: "fleet/eu-west_1" });
    // Older AWS buckets and compatible stores allow capitals and underscores.
    expect(parseBlobStoreUrl("s3://Legacy_Bucket/x")).toEqual({ bucket: "Legacy_Bucket", prefix: "x" });
  });

  it("refuses what is not an s3:// URL, naming the expected form", () => {
    for (const value of ["", "regcache", "http://regcache/x", "S3://regcache", "s3:/regcache", "/data/blobs"]) {
      expect(usageError(value).message).toMatch(/^--blob-store must be s3:\/\/BUCKET or s3:\/\/BUCKET\/PREFIX, got "/);
    }
  });

  it("refuses bucket names S3 cannot have", () => {
    for (const value of ["s3://", "s3:///prefix", "s3://ab", "s3://-bucket", "s3://bucket-", "s3://buc ket", "s3://bucket:9000/x", "s3://bucket?x=1", `s3://${"a".repeat(256)}`]) {
      expect(usageError(value).message, value).toMatch(/^--blob-store bucket must be 3 to 255/);
    }
  });

  it("refuses prefixes that would not name one place (empty segments, dot segments, odd characters)", () => {
    for (const value of ["s3://bucket//x", "s3://bucket/a//b", "s3://bucket/./x", "s3://bucket/a/../b", "s3://bucket/a b", "s3://bucket/a?b", "s3://bucket/a#b", "s3://bucket/a\\b"]) {
      expect(usageError(value).message, value).toMatch(/^--blob-store prefix must be/);
    }
  });

  it("refuses credentials in the URL without repeating them", () => {
    const err = usageError("s3://AKIAEXAMPLE:s3cr3t-value@bucket/prefix");
    expect(err.message).toContain("AWS_ACCESS_KEY_ID");
    expect(err.message).not.toContain("s3cr3t-value");
    expect(err.message).not.toContain("AKIAEXAMPLE");
  });
});
