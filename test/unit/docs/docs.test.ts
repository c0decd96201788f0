import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import type { Command, Option } from "commander";
import { describe, expect, it } from "vitest";
import { caCommand } from "../../../src/cli/ca-command.js";
import { cacheCommand } from "../../../src/cli/cache-command.js";
import { healthCommand } from "../../../src/cli/health-command.js";
import { prefetchCommand } from "../../../src/cli/prefetch-command.js";
import { serveOptions } from "../../../src/cli/serve-options.js";
import { statsCommand } from "../../../src/cli/stats-command.js";
import { Metrics, type MetricsSources } from "../../../src/stats/metrics.js";

const ROOT = path.resolve(__dirname, "../../..");
const read = (file: string): string => readFileSync(path.join(ROOT, file), "utf8");
const DOCS = ["README.md", "SECURITY.md", ...readdirSync(path.join(ROOT, "docs")).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`)];
const text = new Map(DOCS.map((file) => [file, read(file)]));
const all = [...text.values()].join("\n");

/** Every flag of every regcache command, read from the commands themselves: a new option is known at once. */
function regcacheFlags(): Set<string> {
  const flags = new Set(["--debug", "--version", "--help"]);
  const add = (options: readonly Option[]): void => {
    for (const o of options) if (o.long) flags.add(o.long);
  };
  add(serveOptions());
  const walk = (command: Command): void => {
    add(command.options);
    command.commands.forEach(walk);
  };
  [caCommand(), prefetchCommand(), statsCommand(), healthCommand(), cacheCommand()].forEach(walk);
  return flags;
}

/** The options deploy/node-setup.sh parses: the patterns of its `case "$1"`. */
function nodeSetupFlags(): Set<string> {
  const script = read("deploy/node-setup.sh");
  return new Set([...script.matchAll(/^\s+(-[-a-z0-9|]+)\)/gm)].flatMap((m) => m[1]!.split("|")).filter((f) => f.startsWith("--")));
}

/** Flags of other tools the docs show in commands, by tool: anything else must be regcache's or node-setup.sh's. */
const OTHER_TOOLS: Record<string, string[]> = {
  kubectl: ["--from-file", "--since", "--prefix", "--namespace", "--create-namespace", "--timeout", "--for", "--selector", "--dry-run"],
  helm: ["--namespace", "--create-namespace", "--set", "--values", "--wait", "--version", "--reuse-values", "--dry-run"],
  docker: ["--name", "--rm", "--restart", "--stop-timeout", "--log-opt", "--format"],
  "git archive": ["--prefix"],
  "npm prune": ["--omit"],
  tar: ["--strip-components", "--no-same-owner"],
  useradd: ["--system", "--home-dir", "--shell"],
  systemctl: ["--now"],
  promtool: [],
  ctr: ["--user"],
  vitest: ["--config"],
};

describe("docs/ and README", () => {
  it("every flag the docs name exists: an option of a regcache command, of node-setup.sh, or of the other tool a command runs", () => {
    const known = new Set([...regcacheFlags(), ...nodeSetupFlags(), ...Object.values(OTHER_TOOLS).flat()]);
    const unknown = DOCS.flatMap((file) => [...new Set(text.get(file)!.match(/(?<![\w-])--[a-z][a-z0-9-]*/g) ?? [])].filter((f) => !known.has(f)).map((f) => `${file}: ${f}`));
    expect(unknown).toEqual([]);
  });

  it("the flag check is real: node-setup.sh's and the commands' options are read, not assumed", () => {
    expect([...nodeSetupFlags()]).toEqual(expect.arrayContaining(["--proxy", "--ca", "--ca-sha256", "--runtime", "--no-proxy", "--restart", "--uninstall", "--root", "--os", "--help"]));
    expect(regcacheFlags()).toContain("--name-constraint");
    expect(regcacheFlags()).toContain("--blobs");
    expect(regcacheFlags()).not.toContain("--no-such-flag");
  });

  it("every metric regcache exports is in the metrics reference, and the reference names no metric that does not exist", () => {
    // Names only: the sources are read when Prometheus scrapes, never here. With peers and a shared tier, every metric is defined.
    const sources = { cluster: {}, shared: {} } as unknown as MetricsSources;
    const exported = new Metrics(sources).registry.getMetricsAsArray().map((m) => m.name);
    const own = exported.filter((name) => !/^regcache_(process|nodejs)_/.test(name));
    const reference = read("docs/monitoring.md");
    const missing = own.filter((name) => !reference.includes(`\`${name}\``));
    expect(missing).toEqual([]);
    expect(own.length).toBeGreaterThan(30);
    // prom-client's default metrics are documented as their two prefixes.
    expect(reference).toContain("`regcache_process_*`");
    expect(reference).toContain("`regcache_nodejs_*`");
    const exists = (name: string): boolean => exported.includes(name.replace(/_(bucket|sum|count)$/, "")) || /^regcache_(process|nodejs)$/.test(name);
    const invented = [...new Set(all.match(/regcache_[a-z_]*[a-z]/g) ?? [])].filter((name) => !exists(name));
    expect(invented).toEqual([]);
  });

  it("every relative link resolves to a file, and every #anchor to a heading of it", () => {
    const slug = (heading: string): string =>
      heading
        .trim()
        .toLowerCase()
        .replace(/[^\w\- ]/g, "")
        .replace(/ /g, "-");
    const headings = (file: string): Set<string> => new Set([...read(file).matchAll(/^#+ (.*)$/gm)].map((m) => slug(m[1]!)));
    const broken: string[] = [];
    for (const [file, body] of text) {
      const prose = body.replace(/```[\s\S]*?```/g, "");
      for (const [, link] of prose.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(link!)) continue;
        const [target, anchor] = link!.split("#") as [string, string | undefined];
        const resolved = target ? path.normalize(path.join(path.dirname(file), target)) : file;
        let exists = true;
        try {
          readFileSync(path.join(ROOT, resolved));
        } catch {
          exists = false;
        }
        if (!exists) broken.push(`${file}: ${link} (no such file)`);
        else if (anchor && resolved.endsWith(".md") && !headings(resolved).has(anchor)) broken.push(`${file}: ${link} (no such heading)`);
      }
    }
    expect(broken).toEqual([]);
  });

  it("the README's first screen leads to quick start, Kubernetes and troubleshooting, and names the fast check", () => {
    const readme = text.get("README.md")!;
    const firstScreen = readme.split("\n").slice(0, 40).join("\n");
    for (const target of ["#quick-start", "#kubernetes-in-three-commands", "docs/troubleshooting.md"]) expect(firstScreen).toContain(`](${target})`);
    expect(readme).toContain("`npm run test:unit`");
    expect(readme.split("\n").length).toBeLessThan(300);
  });

  it("the documents speak of the product, not of how it was built", () => {
    const history = DOCS.flatMap((file) =>
      text
        .get(file)!
        .split("\n")
        .filter((line) => /\b(sessions?|issues? #?\d+|this round|previous round|earlier rounds?|not met)\b/i.test(line))
        .map((line) => `${file}: ${line.trim()}`),
    );
    expect(history).toEqual([]);
  });
});
