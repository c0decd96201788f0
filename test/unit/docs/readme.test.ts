import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { serveOptions } from "../../../src/cli/serve-options.js";

const ROOT = path.resolve(__dirname, "../../..");
const readme = readFileSync(path.join(ROOT, "README.md"), "utf8");

describe("README", () => {
  it("documents every serve option with its environment variable", () => {
    for (const option of serveOptions()) {
      expect(readme, option.long).toContain(`\`${option.long}`);
      expect(readme, option.envVar).toContain(`\`${option.envVar}\``);
    }
  });

  it("quick start is two commands, and CI runs the README's test command", () => {
    const quick = /## Quick start[\s\S]*?```sh\n([\s\S]*?)```/.exec(readme)![1]!.trim().split("\n");
    expect(quick).toEqual(["npm ci && npx regcache serve", "npm run test:full"]);
    expect(readFileSync(path.join(ROOT, ".ci/run"), "utf8")).toContain("npm run test:full");
  });
});
