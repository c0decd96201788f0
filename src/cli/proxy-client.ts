import { Option } from "commander";
import { request } from "undici";
import { parseHttpUrl } from "../config/parse.js";
import { RegcacheError, systemReason } from "../errors.js";

/** --proxy of the commands that talk to a running regcache. */
export function proxyOption(description: string): Option {
  return new Option("--proxy <url>", description)
    .env("REGCACHE_PROXY")
    .default("http://127.0.0.1:3128")
    .argParser((value: string) => parseHttpUrl(value, "--proxy"));
}

/** The body of GET `path` from the regcache at `proxy`; not reaching it, or any answer but 200, is an error naming the URL. */
export async function fetchFromProxy(proxy: string, path: string): Promise<string> {
  const url = new URL(path, proxy).href;
  let status: number;
  let body: string;
  try {
    const res = await request(url);
    status = res.statusCode;
    body = await res.body.text();
  } catch (err) {
    throw new RegcacheError("PROXY", `cannot reach regcache at ${proxy}: ${systemReason(err)}`, { cause: err });
  }
  if (status !== 200) throw new RegcacheError("PROXY", `${url} answered ${status}: ${body.slice(0, 200)}`);
  return body;
}
