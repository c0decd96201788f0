import { describe, expect, it } from "vitest";
import { describeRegistryAnswer } from "../../../src/prefetch/image-puller.js";

describe("describeRegistryAnswer", () => {
  it.each([
    [404, '{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"nope"}}]}', "404 MANIFEST_UNKNOWN: manifest unknown"],
    [401, '{"errors":[{"code":"UNAUTHORIZED","message":""}]}', "401 UNAUTHORIZED"],
    [502, "", "502"],
    [503, "<html>\n  Service   Unavailable </html>", "503: <html> Service Unavailable </html>"],
  ])("%i %s -> %s", (status, body, text) => {
    expect(describeRegistryAnswer(status, body)).toBe(text);
  });

  it("cuts a long answer at a word, never mid-word", () => {
    const body = `${"registry ".repeat(30)}end`;
    const text = describeRegistryAnswer(500, body);
    expect(text.endsWith("registry…")).toBe(true);
    expect(text.length).toBeLessThan(130);
  });
});
