import { readFileSync } from "node:fs";

/** regcache's version, read from package.json next to dist/ at run time. */
export const VERSION: string = (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }).version;
