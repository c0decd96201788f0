import { readFileSync } from "node:fs";

const manifest = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string; engines: { node: string } };

/** regcache's version, read from package.json next to dist/ at run time. */
export const VERSION: string = manifest.version;

/** The oldest Node.js regcache runs on: package.json's `engines` (">=20.18"), the one place it is written. */
export const MINIMUM_NODE: string = manifest.engines.node.replace(/^>=\s*/, "");
