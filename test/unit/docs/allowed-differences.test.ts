import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ALLOWED_DIFFERENCES } from "../../e2e/harness/allowed-differences.js";

const readme = readFileSync(path.resolve(__dirname, "../../../README.md"), "utf8");

describe("README: differences from the upstream", () => {
  it("lists every allowed difference of the differential suite, word for word, and no other", () => {
    const section = /## Differences from the upstream\n([\s\S]*?)\n## /.exec(readme)?.[1] ?? "";
    const rows = section.split("\n").filter((line) => /^\| `/.test(line));
    expect(rows).toEqual(ALLOWED_DIFFERENCES.map((d) => `| \`${d.id}\` | ${d.line} |`));
  });
});
