import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { acceptAllows, normalizeAccept } from "../../../src/registry/accept.js";
import { contentRange, parseRange } from "../../../src/registry/range.js";

describe("parseRange", () => {
  it("handles a-b, a-, -n", () => {
    expect(parseRange("bytes=0-99", 1000)).toEqual({ kind: "range", range: { start: 0, end: 99 } });
    expect(parseRange("bytes=500-", 1000)).toEqual({ kind: "range", range: { start: 500, end: 999 } });
    expect(parseRange("bytes=-100", 1000)).toEqual({ kind: "range", range: { start: 900, end: 999 } });
    expect(parseRange("bytes=-5000", 1000)).toEqual({ kind: "range", range: { start: 0, end: 999 } });
    expect(parseRange("bytes=900-5000", 1000)).toEqual({ kind: "range", range: { start: 900, end: 999 } });
  });

  it("says unsatisfiable past the end, and ignores what it cannot honour", () => {
    expect(parseRange("bytes=1000-", 1000)).toEqual({ kind: "unsatisfiable" });
    expect(parseRange("bytes=-0", 1000)).toEqual({ kind: "unsatisfiable" });
    expect(parseRange("bytes=5-1", 1000)).toEqual({ kind: "ignore" });
    expect(parseRange("bytes=0-1,5-6", 1000)).toEqual({ kind: "ignore" });
    expect(parseRange("items=0-1", 1000)).toEqual({ kind: "ignore" });
    expect(parseRange("bytes=abc", 1000)).toEqual({ kind: "ignore" });
    expect(parseRange("bytes=-", 1000)).toEqual({ kind: "ignore" });
    expect(parseRange(`bytes=${"9".repeat(300)}-`, 1000)).toEqual({ kind: "ignore" });
    expect(parseRange(undefined, 1000)).toEqual({ kind: "none" });
  });

  it("formats Content-Range", () => {
    expect(contentRange({ start: 5, end: 9 }, 10)).toBe("bytes 5-9/10");
  });

  it("every satisfiable answer lies inside the representation (property)", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), fc.integer({ min: 0, max: 1e9 }), (header, size) => {
        const r = parseRange(`bytes=${header}`, size);
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
});
