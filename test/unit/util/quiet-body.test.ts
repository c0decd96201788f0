import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Writable, pipeline } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent } from "undici";
import { withQuietBody } from "../../../src/util/quiet-body.js";

describe("withQuietBody", () => {
  let server: Server;
  let origin: string;
  const agent = new Agent();
  beforeAll(async () => {
    // A manifest-sized body, whole before anyone reads it: destroying it unread is what undici reports as an error.
    server = createServer((req, res) => {
      if (req.url === "/endless") {
        res.writeHead(200);
        res.write(Buffer.alloc(64 * 1024));
        return;
      }
      res.writeHead(200, { "content-length": 1000 }).end(Buffer.alloc(1000));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await agent.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it("a body given up unread is destroyed without an error escaping (vitest fails a test on an unhandled one)", async () => {
    const response = withQuietBody(await agent.request({ origin, path: "/", method: "GET" }));
    response.body.destroy();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(response.body.destroyed).toBe(true);
  });

  it("whoever reads the body still sees its failure", async () => {
    const response = withQuietBody(await agent.request({ origin, path: "/endless", method: "GET" }));
    const seen = new Promise<Error | null | undefined>((resolve) => pipeline(response.body, new Writable({ write: (_chunk, _encoding, callback) => callback() }), resolve));
    response.body.destroy(new Error("the client went away"));
    expect((await seen)?.message).toBe("the client went away");
  });
});
