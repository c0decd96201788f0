import type { ServerResponse } from "node:http";
import { PassThrough, Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { errorReply, writeReply, type Reply } from "../../../src/registry/reply.js";

/** A response that records what was written to it. */
function response(headersSent = false) {
  const sent = { status: 0, headers: {} as Record<string, unknown>, body: "" };
  const sink = new PassThrough();
  sink.on("data", (chunk: Buffer) => (sent.body += chunk.toString()));
  const res = Object.assign(sink, {
    headersSent,
    writeHead(status: number, headers: Record<string, unknown>) {
      sent.status = status;
      sent.headers = headers;
      return res;
    },
  });
  return { res: res as unknown as ServerResponse, sink, sent, finished: new Promise((r) => sink.on("finish", r)) };
}

describe("writeReply", () => {
  it("sends a registry error as JSON with its length, and only the headers to a HEAD", async () => {
    const reply = errorReply(404, "MANIFEST_UNKNOWN", "no such manifest", { "x-cache": "MISS" });
    const get = response();
    writeReply(get.res, reply, "GET");
    await get.finished;
    expect(get.sent.status).toBe(404);
    expect(JSON.parse(get.sent.body)).toEqual({ errors: [{ code: "MANIFEST_UNKNOWN", message: "no such manifest" }] });
    expect(get.sent.headers["content-length"]).toBe(Buffer.byteLength(get.sent.body));
    expect(get.sent.headers).toMatchObject({ "x-cache": "MISS", "docker-distribution-api-version": "registry/2.0" });
    const head = response();
    writeReply(head.res, reply, "HEAD");
    await head.finished;
    expect(head.sent.body).toBe("");
  });

  it("opens a range body only when it is sent: never for a HEAD or an empty range", async () => {
    let opened = 0;
    const reply = (start: number, end: number): Reply => ({ status: 200, headers: {}, body: { kind: "range", start, end, open: () => (opened++, Readable.from([Buffer.from("bytes")])) } });
    const head = response();
    writeReply(head.res, reply(0, 4), "HEAD");
    const empty = response();
    writeReply(empty.res, reply(0, -1), "GET");
    await Promise.all([head.finished, empty.finished]);
    expect(opened).toBe(0);
    const get = response();
    writeReply(get.res, reply(0, 4), "GET");
    await get.finished;
    expect(opened).toBe(1);
    expect(get.sent.body).toBe("bytes");
  });

  it("cuts the connection instead once headers are out: a truncated body, never a second answer", () => {
    const late = response(true);
    writeReply(late.res, errorReply(500, "UNAVAILABLE", "x"), "GET");
    expect(late.sent.status).toBe(0);
    expect(late.sink.destroyed).toBe(true);
  });
});
