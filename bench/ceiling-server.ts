/**
 * The ceiling for a warm blob on this runtime: a bare node:https server that streams one file
 * from disk, nothing else, in 256 KiB reads (the default 64 KiB reads halve TLS throughput;
 * regcache reads 256 KiB for a single stream, src/cache/read-chunk.ts). Run as its own process, as regcache is:
 *
 *   node ceiling-server.js FILE KEY_PEM_FILE CHAIN_PEM_FILE
 *
 * Prints the port it listens on (127.0.0.1), then serves FILE for every GET.
 */
import { createReadStream, readFileSync, statSync } from "node:fs";
import { createServer } from "node:https";
import { pipeline } from "node:stream";

const READ_SIZE = 256 * 1024;
const [file, keyFile, chainFile] = process.argv.slice(2) as [string, string, string];
const size = statSync(file).size;
const server = createServer({ key: readFileSync(keyFile), cert: readFileSync(chainFile) }, (req, res) => {
  res.writeHead(200, { "content-type": "application/octet-stream", "content-length": size });
  if (req.method === "HEAD") {
    res.end();
    return;
  }
  pipeline(createReadStream(file, { highWaterMark: READ_SIZE }), res, () => undefined);
});
server.listen(0, "127.0.0.1", () => process.stdout.write(`${(server.address() as { port: number }).port}\n`));
