import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { serveOptions } from "../../../src/cli/serve-options.js";
import { missingTools } from "../../e2e/harness/tools.js";
import { DEFAULT_SHUTDOWN_SECONDS } from "./stop-time.js";

const ROOT = path.resolve(__dirname, "../../..");
const unitText = readFileSync(path.join(ROOT, "deploy/systemd/regcache.service"), "utf8");
const envText = readFileSync(path.join(ROOT, "deploy/systemd/regcache.env"), "utf8");

/** KEY=value lines of [Service] (comments dropped), a key given twice keeping both values. */
function serviceSettings(): Map<string, string[]> {
  const settings = new Map<string, string[]>();
  const section = /^\[Service\]\n([\s\S]*?)(?=^\[|(?![\s\S]))/m.exec(unitText)![1]!;
  for (const line of section.split("\n")) {
    const match = /^(\w+)=(.*)$/.exec(line.trim());
    if (match) settings.set(match[1]!, [...(settings.get(match[1]!) ?? []), match[2]!]);
  }
  return settings;
}
const service = serviceSettings();
const setting = (key: string): string | undefined => service.get(key)?.at(-1);
const env = new Map(envText.split("\n").filter((l) => /^\w+=/.test(l)).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)] as const));

describe("deploy/systemd", () => {
  it("runs regcache serve as its own user, with its settings from /etc/regcache/env", () => {
    expect(setting("User")).toBe("regcache");
    expect(setting("EnvironmentFile")).toBe("/etc/regcache/env");
    expect(setting("ExecStart")).toBe("/opt/regcache/dist/cli/main.js serve");
  });

  it("the sample env file sets only variables serve reads", () => {
    const known = serveOptions().map((o) => o.envVar);
    for (const key of env.keys()) expect(known, key).toContain(key);
  });

  it("leaves writable only the data and certs directories the env file names", () => {
    expect(setting("ProtectSystem")).toBe("strict");
    expect(setting("NoNewPrivileges")).toBe("yes");
    expect(setting("ReadWritePaths")!.split(/\s+/).sort()).toEqual([env.get("REGCACHE_CERTS_DIR"), env.get("REGCACHE_DATA_DIR")].sort());
    // V8 compiles to memory it then executes: this setting would kill node at start.
    expect(service.has("MemoryDenyWriteExecute")).toBe(false);
  });

  it("allows enough descriptors for --max-connections and time for the drain", () => {
    expect(Number(setting("LimitNOFILE"))).toBeGreaterThanOrEqual(2 * 4096);
    expect(Number(/^(\d+)s$/.exec(setting("TimeoutStopSec") ?? "")?.[1])).toBeGreaterThan(DEFAULT_SHUTDOWN_SECONDS);
  });

  it.skipIf(missingTools("systemd-analyze").length > 0)("passes systemd-analyze verify without a warning", () => {
    // verify insists that ExecStart exists: point it at a binary every system has.
    const copy = path.join(tmpdir(), `regcache-${process.pid}.service`);
    writeFileSync(copy, unitText.replace(/^ExecStart=\S+/m, "ExecStart=/bin/sh"));
    const verify = spawnSync("systemd-analyze", ["verify", copy], { encoding: "utf8" });
    expect({ status: verify.status, output: `${verify.stdout}${verify.stderr}` }).toEqual({ status: 0, output: "" });
  });
});
