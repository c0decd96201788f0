import { describe, expect, it } from "vitest";
import { queryString } from "../../../src/fleet/s3-read-transport.js";

describe("queryString (the query of an S3 read, as SigV4 signed it)", () => {
  it("sorts the keys and escapes names and values per RFC 3986, as the SDK's signer does", () => {
    expect(queryString({ prefix: "fleet/a b", "list-type": "2", "continuation-token": "1+2=3!'()*~" })).toBe(
      "continuation-token=1%2B2%3D3%21%27%28%29%2A~&list-type=2&prefix=fleet%2Fa%20b",
    );
  });

  it("writes a key without a value alone, an empty value as key=, and a list as the key repeated", () => {
    expect(queryString({ uploads: null, x: "", tag: ["b", "a"] })).toBe("tag=b&tag=a&uploads&x=");
  });
});
