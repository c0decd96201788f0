/**
 * The reference for a cold fill on this runtime, as ceiling-server.ts is for a hit: a bare Node
 * pipeline doing what a fill must and nothing else. For each GET it asks the registry for the same
 * path (undici, 1 MiB reads, as regcache's upstream client), and hands each chunk to SHA-256, to
 * a file (the chunks that queued while a write was in flight go in one writev, as regcache's
 * downloads do) and to the client (node:https, with backpressure); at the end the digest is
 * checked, the file fsynced and renamed, and the response ended. No cache logic. Run as its own
 * process, as regcache is:
 *
 *   node fill-reference-server.js UPSTREAM_ORIGIN CA_PEM_FILE KEY_PEM_FILE CHAIN_PEM_FILE DIR
 *
 * Prints the port it listens on (127.0.0.1).
 */
import { createHash } from "node:crypto";
import { close, fsync, openSync, readFileSync, rename, writev } from "node:fs";
import { createServer } from "node:https";
import path from "node:path";
import { Agent } from "undici";

const READ_SIZE = 1024 * 1024;
/** As regcache reads a file for one client (src/cache/read-chunk.ts). */
const BATCH_BYTES = 256 * 1024;
const [origin, caFile, keyFile, chainFile, dir] = process.argv.slice(2) as [string, string, string, string, string];
const agent = new Agent({ connect: { ca: readFileSync(caFile, "utf8") } });

const server = createServer({ key: readFileSync(keyFile), cert: readFileSync(chainFile) }, (req, res) => {
  const hex = /sha256:([a-f0-9]{64})$/.exec(req.url ?? "")?.[1];
  if (!hex) {
    res.writeHead(404).end();
    return;
  }
  agent.request({ origin, path: req.url!, method: "GET", highWaterMark: READ_SIZE }).then(({ statusCode, headers, body }) => {
    res.writeHead(statusCode, { "content-type": "application/octet-stream", "content-length": String(headers["content-length"]) });
    const hash = createHash("sha256");
    const temp = path.join(dir, `${hex}.tmp`);
    const fd = openSync(temp, "w");
    let position = 0;
    let toFile: Buffer[] = [];
    let writingFile = false;
    let ended = false;
    // The client's bytes are copied into one of two buffers reused once written out, 256 KiB at a
    // time, as regcache's reads of a file for a client (range-sender.ts): a TLS write per chunk
    // as it arrives, or a fresh buffer per write, costs about twice the CPU.
    const spare: Buffer[] = [Buffer.allocUnsafeSlow(BATCH_BYTES), Buffer.allocUnsafeSlow(BATCH_BYTES)];
    let filling: Buffer | undefined;
    let filled = 0;
    let clientDone = false;
    let fileDone = false;
    const finish = (): void => {
      if (!clientDone || !fileDone) return;
      if (hash.digest("hex") !== hex) {
        res.destroy();
        return;
      }
      fsync(fd, () => close(fd, () => rename(temp, path.join(dir, hex), () => res.end())));
    };
    const sendFilled = (): void => {
      const buffer = filling!;
      filling = undefined;
      res.write(filled === buffer.length ? buffer : buffer.subarray(0, filled), () => {
        spare.push(buffer);
        if (spare.length === 1) body.resume();
      });
      filled = 0;
    };
    const toClient = (chunk: Buffer): void => {
      for (let at = 0; at < chunk.length; ) {
        filling ??= spare.pop();
        if (!filling) throw new Error("no spare buffer: the body was not paused");
        const n = chunk.copy(filling, filled, at);
        filled += n;
        at += n;
        if (filled === filling.length) sendFilled();
      }
      // Both buffers out: wait for one to come back before taking more.
      if (spare.length === 0 && filling === undefined) body.pause();
    };
    const flushFile = (): void => {
      if (writingFile) return;
      if (toFile.length === 0) {
        fileDone = ended;
        finish();
        return;
      }
      writingFile = true;
      const chunks = toFile;
      toFile = [];
      writev(fd, chunks, position, (err, written) => {
        if (err) throw err;
        position += written;
        writingFile = false;
        flushFile();
      });
    };
    body.on("data", (chunk: Buffer) => {
      hash.update(chunk);
      toFile.push(chunk);
      flushFile();
      toClient(chunk);
    });
    body.on("end", () => {
      ended = true;
      if (filling) sendFilled();
      clientDone = true;
      flushFile();
    });
  }, () => res.destroy());
});
server.listen(0, "127.0.0.1", () => process.stdout.write(`${(server.address() as { port: number }).port}\n`));
