import { describe, expect, it } from "vitest";
import { alignColumns, formatAge, removalPath, verifyFoundDamage } from "../../../src/cli/cache-command.js";

const digest = `sha256:${"ab".repeat(32)}`;

describe("regcache cache helpers", () => {
  it("aligns columns, numbers to the right, without trailing spaces", () => {
    expect(alignColumns([["IMAGE", "SIZE", "NOTE"], ["a/b:1", "1.5 MiB", ""], ["quay.test/x:latest", "12 B", "x"]], new Set([1]))).toBe(
      ["IMAGE                  SIZE  NOTE", "a/b:1               1.5 MiB", "quay.test/x:latest     12 B  x", ""].join("\n"),
    );
  });

  it.each([
    [null, "-"],
    [1_000_000 - 500, "0s ago"],
    [1_000_000 - 59_999, "59s ago"],
    [1_000_000 - 60_000, "1m ago"],
    [1_000_000 - 3_600_000, "1h ago"],
    [1_000_000 - 3 * 86_400_000, "3d ago"],
    [1_000_000 + 5_000, "0s ago"],
  ])("last use %s is %s", (at, text) => {
    expect(formatAge(at, 1_000_000)).toBe(text);
  });

  it("rm: a whole digest is one file, anything else a tag in the form the API takes", () => {
    expect(removalPath(digest)).toEqual({ path: `/api/cache/blobs/${digest}`, kind: "digest" });
    expect(removalPath("quay.test/team/app:v1")).toEqual({ path: "/api/cache/images/quay.test/team/app:v1", kind: "image" });
    expect(removalPath("nginx")).toEqual({ path: "/api/cache/images/registry-1.docker.io/library/nginx:latest", kind: "image" });
  });

  it("rm: a digest cut short or a bad name is a usage error", () => {
    for (const target of ["sha256:abab", "Quay.test/App", `quay.test/app@${digest}`]) {
      expect(() => removalPath(target), target).toThrow(expect.objectContaining({ code: "USAGE" }));
    }
  });

  it("`cache verify` fails when the check found a damaged or a missing file, and only then", () => {
    const report = { checked: 3, bytes: 100, durationMs: 5, damaged: [], missing: [] };
    const file = { digest, size: 10 };
    expect(verifyFoundDamage(report)).toBe(false);
    expect(verifyFoundDamage({ ...report, damaged: [file] })).toBe(true);
    expect(verifyFoundDamage({ ...report, missing: [file] })).toBe(true);
  });
});
