import { describe, expect, it } from "vitest";
import { parseWwwAuthenticate } from "../../../src/upstream/www-authenticate.js";

describe("parseWwwAuthenticate", () => {
  it("parses Docker Hub's Bearer challenge", () => {
    expect(parseWwwAuthenticate('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"')).toEqual([
      { scheme: "bearer", params: { realm: "https://auth.docker.io/token", service: "registry.docker.io", scope: "repository:library/nginx:pull" } },
    ]);
  });

  it("parses Basic and tolerates junk", () => {
    expect(parseWwwAuthenticate('Basic realm="regcache-test"')).toEqual([{ scheme: "basic", params: { realm: "regcache-test" } }]);
    expect(parseWwwAuthenticate(undefined)).toEqual([]);
    expect(() => parseWwwAuthenticate('Bearer realm="unterminated')).not.toThrow();
  });
});
