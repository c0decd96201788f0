import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { unsupportedNode } from "../../../src/cli/node-version.js";
import { MINIMUM_NODE } from "../../../src/version.js";

describe("the Node.js version check at start-up", () => {
  it("takes the minimum from package.json's engines", () => {
    const engines = (JSON.parse(readFileSync(path.resolve(__dirname, "../../../package.json"), "utf8")) as { engines: { node: string } }).engines.node;
    expect(engines).toBe(`>=${MINIMUM_NODE}`);
    expect(MINIMUM_NODE).toMatch(/^\d+\.\d+$/);
  });

  it("refuses older versions with one line naming the minimum, the version found and where to get Node", () => {
    expect(unsupportedNode("18.19.0", "20.18")).toBe(
      "Node.js 20.18 or newer is required (this is 18.19.0); on Debian 12 install it from NodeSource or use the official binaries: https://nodejs.org/en/download",
    );
    for (const old of ["20.17.9", "20.9.0", "19.99.0", "8.17.0"]) expect(unsupportedNode(old, "20.18"), old).not.toBeNull();
  });

  it("accepts the minimum and anything newer, comparing numbers, not strings", () => {
    for (const ok of ["20.18.0", "20.18.3", "20.20.2", "22.1.0", "24.0.0", "100.0.0"]) expect(unsupportedNode(ok, "20.18"), ok).toBeNull();
  });
});
