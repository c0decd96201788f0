import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseDigest } from "../../../src/oci/digest.js";

const SHA = "a".repeat(64);

describe("parseDigest", () => {
  it("accepts sha256 and sha512 of exact length only", () => {
    expect(parseDigest(`sha256:${SHA}`)?.value).toBe(`sha256:${SHA}`);
    expect(parseDigest(`sha256:${SHA}0`)).toBeUndefined();
    expect(parseDigest(`sha512:${SHA}`)).toBeUndefined();
    expect(parseDigest(`constructor:${SHA}`)).toBeUndefined();
    expect(parseDigest("sha256")).toBeUndefined();
  });

  it("round-trips every valid digest and refuses arbitrary strings (property)", () => {
    fc.assert(fc.property(fc.stringMatching(/^[0-9a-f]{64}$/), (hex) => {
        expect(parseDigest(`sha256:${hex}`)?.hex).toBe(hex);
      }),
    );
    fc.assert(
      fc.property(fc.string(), (s) => {
        const d = parseDigest(s);
        if (d) expect(s).toMatch(/^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$/);
      }),
      { numRuns: 5000 },
    );
  });
});
