import { readFile } from "node:fs/promises";
import { Command, Option } from "commander";
import { ProxyAgent } from "undici";
import { RegcacheError, systemReason } from "../errors.js";
import { ImagePuller, parsePlatform } from "../prefetch/image-puller.js";
import { parseImageReference, type ImageReference } from "../oci/image-reference.js";
import { loadCredentialsFile } from "../upstream/proxy-credentials.js";
import { formatBytes } from "./format-bytes.js";
import { fetchFromProxy, proxyOption } from "./proxy-client.js";
import { ProgressReporter } from "./pull-progress.js";

interface PrefetchOptions {
  file?: string;
  proxy: string;
  platform?: string;
  ca?: string;
  concurrency: string;
  credentials?: string;
}

/** Image references from arguments and from a file (one per line, # comments, "-" for stdin). */
async function collectReferences(args: string[], file: string | undefined): Promise<string[]> {
  const refs = [...args];
  if (file) {
    const text = file === "-" ? await readStdin() : await readOptionFile(file, "--file");
    for (const line of text.split("\n")) {
      const ref = line.replace(/#.*/, "").trim();
      if (ref) refs.push(ref);
    }
  }
  return [...new Set(refs)];
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

async function readOptionFile(file: string, flag: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (err) {
    throw new RegcacheError("CONFIG", `cannot read ${flag} ${file}: ${systemReason(err)}`, { cause: err });
  }
}

/** The proxy's CA: from --ca, else from the proxy's own /ca.crt (the proxy is what we trust anyway). */
async function proxyCa(proxy: string, caFile: string | undefined): Promise<string> {
  if (!caFile) return fetchFromProxy(proxy, "/ca.crt");
  // Without this, a proxy that is not there fails every image in turn instead of the run at once.
  await fetchFromProxy(proxy, "/healthz");
  return readOptionFile(caFile, "--ca");
}

export function prefetchCommand(): Command {
  return new Command("prefetch")
    .description("pull images through a running regcache so that an outage finds them cached")
    .argument("[images...]", "image references, e.g. nginx:1.27, quay.io/org/app@sha256:...")
    .option("-f, --file <file>", "read references from a file, one per line ('-' for stdin)")
    .addOption(proxyOption("the regcache to pull through"))
    .option("--platform <os/arch>", "only this platform of multi-platform images (default: all platforms)")
    .option("--ca <file>", "regcache's CA certificate (default: fetched from the proxy's /ca.crt)")
    .option("--concurrency <n>", "blobs fetched at once per image", "3")
    .addOption(new Option("--credentials <file>", "registry credentials for private images, the JSON file `serve --credentials` takes (host -> {username,password} or {token})").env("REGCACHE_CREDENTIALS"))
    .action(async (images: string[], opts: PrefetchOptions) => {
      const refs = await collectReferences(images, opts.file);
      if (refs.length === 0) throw new RegcacheError("USAGE", "no image references given (arguments or --file)");
      const credentials = opts.credentials ? loadCredentialsFile(opts.credentials) : new Map();
      const ca = await proxyCa(opts.proxy, opts.ca);
      const dispatcher = new ProxyAgent({ uri: opts.proxy, requestTls: { ca: [ca] } });
      const puller = new ImagePuller(dispatcher, opts.platform ? parsePlatform(opts.platform) : undefined, Math.max(1, Number(opts.concurrency) || 3), credentials);
      const tty = process.stderr.isTTY === true;
      const failures: string[] = [];
      let totalBytes = 0;
      for (const text of refs) {
        let ref: ImageReference;
        try {
          ref = parseImageReference(text);
        } catch (err) {
          failures.push(`${text}: ${(err as Error).message}`);
          process.stdout.write(`failed ${text}: ${(err as Error).message}\n`);
          continue;
        }
        const progress = new ProgressReporter(text, tty, (line) => process.stderr.write(line));
        try {
          const result = await puller.pull(ref, (p) => progress.update(p));
          totalBytes += result.bytes;
          progress.done();
          process.stdout.write(`ok ${text} ${result.digest} manifests=${result.manifests} blobs=${result.blobs} bytes=${result.bytes}\n`);
        } catch (err) {
          progress.done();
          failures.push(`${text}: ${(err as Error).message}`);
          process.stdout.write(`failed ${text}: ${(err as Error).message}\n`);
        }
      }
      await dispatcher.close();
      process.stdout.write(`prefetched ${refs.length - failures.length}/${refs.length} images, ${formatBytes(totalBytes)}\n`);
      if (failures.length > 0) {
        process.stderr.write(`${failures.length} image(s) failed:\n${failures.map((f) => `  ${f}`).join("\n")}\n`);
        process.exitCode = 1;
      }
    });
}
