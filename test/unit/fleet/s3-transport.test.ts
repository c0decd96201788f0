import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Readable } from "node:stream";
import { buffer as drain } from "node:stream/consumers";
import { ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { S3Transport } from "../../../src/fleet/s3-transport.js";

type SdkRequest = Parameters<S3Transport["handle"]>[0];

describe("S3Transport (reads over undici) against a loopback HTTP server", () => {
  let server: Server;
  let port: number;
  let connections = 0;
  let listings = 0;
  const seen: IncomingMessage[] = [];
  let transport: S3Transport;

  beforeAll(async () => {
    server = createServer((req, res) => {
      seen.push(req);
      if (req.url === "/cut") {
        // Announces more than it sends, then the connection closes: a store gone mid-body.
        res.writeHead(200, { "content-length": 1_000_000 });
        res.write(Buffer.alloc(64 * 1024), () => req.socket.destroy());
        return;
      }
      if (req.url?.startsWith("/bucket/?list-type=2")) {
        // A listing cut mid-body the first time, whole the next: the SDK reads it within its retry.
        const listing = '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>bucket</Name><KeyCount>1</KeyCount><IsTruncated>false</IsTruncated><Contents><Key>k</Key><Size>3</Size></Contents></ListBucketResult>';
        res.writeHead(200, { "content-type": "application/xml", "content-length": Buffer.byteLength(listing) });
        if (listings++ === 0) res.write(listing.slice(0, 40), () => req.socket.destroy());
        else res.end(listing);
        return;
      }
      if (req.url === "/endless") {
        res.writeHead(200);
        res.write(Buffer.alloc(64 * 1024));
        return;
      }
      res.setHeader("set-cookie", ["a=1", "b=2"]);
      res.writeHead(200, { "content-length": 5, "x-amz-request-id": "r1" }).end(req.method === "HEAD" ? undefined : "hello");
    });
    server.on("connection", () => connections++);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterEach(() => transport?.destroy());

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  function request(method: string, path: string, query: SdkRequest["query"] = {}): SdkRequest {
    return { protocol: "http:", hostname: "127.0.0.1", port, method, path, query, headers: {} } as SdkRequest;
  }

  it("keeps the connection alive across HEADs (undici closes it after each unless told not to)", async () => {
    transport = new S3Transport({ connectMs: 1_000, idleMs: 5_000 });
    const before = connections;
    for (let i = 0; i < 6; i++) {
      const { response } = await transport.handle(request("HEAD", "/bucket/key"));
      expect(response.statusCode).toBe(200);
      await drain(response.body as Readable);
    }
    // Two at most: a request may be sent before undici has taken the last one's connection back.
    expect(connections - before).toBeLessThanOrEqual(2);
  });

  it("sends the query as the SDK's own handler writes it (what SigV4 signed), and hands on repeated headers joined", async () => {
    transport = new S3Transport({ connectMs: 1_000, idleMs: 5_000 });
    const { response } = await transport.handle(request("GET", "/bucket/a%20b%2Bc", { prefix: "a b+ü/", "list-type": "2", "continuation-token": "x+/=" }));
    expect(await drain(response.body as Readable)).toEqual(Buffer.from("hello"));
    expect(seen.at(-1)?.url).toBe("/bucket/a%20b%2Bc?continuation-token=x%2B%2F%3D&list-type=2&prefix=a%20b%2B%C3%BC%2F");
    expect(response.headers["x-amz-request-id"]).toBe("r1");
    expect(response.headers["set-cookie"]).toBe("a=1, b=2");
  });

  it("a body cut by the server errors for its reader", async () => {
    transport = new S3Transport({ connectMs: 1_000, idleMs: 5_000 });
    const { response } = await transport.handle(request("GET", "/cut"));
    await expect(drain(response.body as Readable)).rejects.toThrow();
  });

  it("destroy() errors a body in flight for its reader, and nothing escapes unhandled (vitest fails a test on that)", async () => {
    transport = new S3Transport({ connectMs: 1_000, idleMs: 5_000 });
    const { response } = await transport.handle(request("GET", "/endless"));
    const read = drain(response.body as Readable);
    transport.destroy();
    await expect(read).rejects.toThrow();
    // A client destroyed twice (S3Client.destroy() after a failure path) is harmless.
    transport.destroy();
    await new Promise((resolve) => setTimeout(resolve, 50));
  });

  it("a caller's abort before the answer rejects the request; after it, errors the body", async () => {
    transport = new S3Transport({ connectMs: 1_000, idleMs: 5_000 });
    const early = new AbortController();
    early.abort(new Error("given up"));
    await expect(transport.handle(request("GET", "/endless"), { abortSignal: early.signal })).rejects.toThrow("given up");
    const late = new AbortController();
    const { response } = await transport.handle(request("GET", "/endless"), { abortSignal: late.signal });
    const read = drain(response.body as Readable);
    late.abort(new Error("given up later"));
    await expect(read).rejects.toThrow("given up later");
  });

  it("a listing whose body is cut is read again, as the SDK retries a blip (S3ObjectStore: two attempts)", async () => {
    transport = new S3Transport({ connectMs: 1_000, idleMs: 5_000 });
    const client = new S3Client({
      endpoint: `http://127.0.0.1:${port}`,
      region: "us-east-1",
      forcePathStyle: true,
      credentials: { accessKeyId: "id", secretAccessKey: "secret" },
      maxAttempts: 2,
      requestHandler: transport,
    });
    const page = await client.send(new ListObjectsV2Command({ Bucket: "bucket" }));
    expect(page.Contents?.map((c) => c.Key)).toEqual(["k"]);
    expect(listings).toBe(2);
  });
});
