import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { acceptAllows, acceptNames, normalizeAccept } from "../../../src/registry/accept.js";
import { contentRange, isSingleByteRange, planRange } from "../../../src/registry/range.js";

const ETAG = '"sha256:abc"';
const plan = (range: string | undefined, size: number | undefined = 1000, ifRange?: string) => planRange(range, ifRange, ETAG, size);

describe("planRange", () => {
  it("answers one satisfiable byte range: a-b, a-, -n, clamped to the size", () => {
    expect(plan("bytes=0-99")).toEqual({ kind: "range", range: { start: 0, end: 99 } });
    expect(plan("bytes=500-")).toEqual({ kind: "range", range: { start: 500, end: 999 } });
    expect(plan("bytes=-100")).toEqual({ kind: "range", range: { start: 900, end: 999 } });
    expect(plan("bytes=-5000")).toEqual({ kind: "range", range: { start: 0, end: 999 } });
    expect(plan("bytes=900-5000")).toEqual({ kind: "range", range: { start: 900, end: 999 } });
    expect(plan(undefined)).toEqual({ kind: "whole" });
  });

  it("sends the whole representation when If-Range does not name it exactly (RFC 9110 section 13.1.5)", () => {
    expect(plan("bytes=0-9", 1000, ETAG)).toEqual({ kind: "range", range: { start: 0, end: 9 } });
    expect(plan("bytes=0-9", 1000, ` ${ETAG} `)).toEqual({ kind: "range", range: { start: 0, end: 9 } });
    expect(plan("bytes=0-9", 1000, '"sha256:other"')).toEqual({ kind: "whole" });
    expect(plan("bytes=0-9", 1000, `W/${ETAG}`)).toEqual({ kind: "whole" });
    expect(plan("bytes=0-9", 1000, "Wed, 21 Oct 2015 07:28:00 GMT")).toEqual({ kind: "whole" });
    expect(plan("bytes=0-1,4-5", 1000, '"sha256:other"')).toEqual({ kind: "whole" });
  });

  it("forwards what registries answer differently: several ranges, other units, invalid or unsatisfiable ones, an unknown size", () => {
    for (const range of ["bytes=1000-", "bytes=-0", "bytes=5-1", "bytes=0-1,5-6", "items=0-1", "bytes=abc", "bytes=-", `bytes=${"9".repeat(300)}-`]) {
      expect(plan(range), range).toEqual({ kind: "forward" });
    }
    expect(planRange("bytes=0-9", undefined, ETAG, undefined)).toEqual({ kind: "forward" });
    expect(plan("bytes=-1", 0)).toEqual({ kind: "forward" });
  });

  it("says which headers are one well-formed byte range", () => {
    for (const ok of ["bytes=0-9", "bytes=9-9", "bytes=10-", "bytes=-5"]) expect(isSingleByteRange(ok), ok).toBe(true);
    for (const bad of ["bytes=9-8", "bytes=-", "bytes=0-1,2-3", "bytes= 0-9", "Bytes=0-9", "items=0-9"]) expect(isSingleByteRange(bad), bad).toBe(false);
  });

  it("formats Content-Range", () => {
    expect(contentRange({ start: 5, end: 9 }, 10)).toBe("bytes 5-9/10");
  });

  it("every range it answers lies inside the representation (property)", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), fc.integer({ min: 0, max: 1e9 }), (header, size) => {
        const r = plan(`bytes=${header}`, size);
        if (r.kind === "range") {
          expect(r.range.start).toBeGreaterThanOrEqual(0);
          expect(r.range.end).toBeLessThan(size);
          expect(r.range.start).toBeLessThanOrEqual(r.range.end);
        }
      }),
      { numRuns: 5000 },
    );
  });
});

describe("Accept", () => {
  it("merges lines, drops parameters, sorts and de-duplicates", () => {
    expect(normalizeAccept(["application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json;q=0.9", "application/vnd.oci.image.index.v1+json"])).toEqual([
      "application/vnd.docker.distribution.manifest.v2+json",
      "application/vnd.oci.image.index.v1+json",
    ]);
    expect(normalizeAccept(undefined)).toEqual([]);
  });

  it("allows a media type when listed, wildcarded, or when no Accept was sent", () => {
    const oci = "application/vnd.oci.image.manifest.v1+json";
    expect(acceptAllows([], oci)).toBe(true);
    expect(acceptAllows(["*/*"], oci)).toBe(true);
    expect(acceptAllows(["application/*"], oci)).toBe(true);
    expect(acceptAllows([oci], oci)).toBe(true);
    expect(acceptAllows(["application/vnd.docker.distribution.manifest.v2+json"], oci)).toBe(false);
  });

  it("names a media type only when the Accept set lists it itself: no wildcard, no absent Accept", () => {
    const oci = "application/vnd.oci.image.manifest.v1+json";
    expect(acceptNames([oci], `${oci}; charset=utf-8`)).toBe(true);
    expect(acceptNames(normalizeAccept(`application/vnd.docker.distribution.manifest.v2+json, ${oci};q=0.5, */*`), oci)).toBe(true);
    expect(acceptNames([], oci)).toBe(false);
    expect(acceptNames(["*/*"], oci)).toBe(false);
    expect(acceptNames(["application/*"], oci)).toBe(false);
  });
});
