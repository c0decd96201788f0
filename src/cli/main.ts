#!/usr/bin/env node
// Only modules that load on any Node.js are imported here. The rest is imported once the version
// is known to be supported: on Node 18, undici throws at import time ("File is not defined"),
// which would print a stack instead of saying what to install.
import { MINIMUM_NODE } from "../version.js";
import { unsupportedNode } from "./node-version.js";

const unsupported = unsupportedNode(process.versions.node, MINIMUM_NODE);
if (unsupported !== null) {
  process.stderr.write(`regcache: ${unsupported}\n`);
  process.exit(1);
}
await import("./run.js");
