import { describe, expect, it } from "vitest";
import { isRepositoryName, isTag } from "../../../src/oci/names.js";

describe("isRepositoryName", () => {
  it.each([
    ["library/alpine", true],
    ["a", true],
    ["team/sub.group/app-x__y", true],
    ["a--b", true],
    ["Upper/case", false],
    ["/leading", false],
    ["trailing/", false],
    ["a//b", false],
    ["a.-b", false],
    ["", false],
  ])("%s: %s", (name, valid) => {
    expect(isRepositoryName(name)).toBe(valid);
  });
});

describe("isTag", () => {
  it.each([
    ["latest", true],
    ["v1.2.3-rc_1", true],
    ["_x", true],
    ["x".repeat(128), true],
    ["x".repeat(129), false],
    [".hidden", false],
    ["-dash", false],
    ["a:b", false],
    ["", false],
  ])("%s: %s", (tag, valid) => {
    expect(isTag(tag)).toBe(valid);
  });
});
