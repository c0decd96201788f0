import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const SRC = path.resolve(__dirname, "../../src");

/**
 * The layers of src/, lowest first: a file may import from its own layer and the layers below it,
 * never from a layer above. docs/architecture.md, "Source layout", describes the same order.
 * registry, cluster and sources share a layer: the handlers fill from peers (cluster.ts) through
 * the sources of a fill (sources/), and the peer server answers peers through the same handlers
 * (peer-server.ts, PeerServices).
 */
const LAYERS: string[][] = [
  ["util", "errors.ts", "version.ts"],
  ["oci", "log"],
  ["config"],
  ["tls"],
  ["cache"],
  ["fleet"],
  ["upstream"],
  ["registry", "cluster", "sources"],
  ["proxy", "prefetch", "mirror"],
  ["stats", "admin"],
  ["regcache.ts"],
  ["cli"],
];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return entry.name.endsWith(".ts") ? [full] : [];
  });
}

/** The src/ files a file imports, re-exports or loads dynamically ("./x.js" is x.ts). */
function importsOf(file: string): string[] {
  const { importedFiles } = ts.preProcessFile(readFileSync(file, "utf8"), true, true);
  return importedFiles
    .map((f) => f.fileName)
    .filter((name) => name.startsWith("."))
    .map((name) => path.resolve(path.dirname(file), name).replace(/\.js$/, ".ts"));
}

/** A file's place: the folder right under src/, or the file's own name for files at the top. */
function unitOf(file: string): string {
  return path.relative(SRC, file).split(path.sep)[0]!;
}

function layerOf(file: string): number {
  return LAYERS.findIndex((layer) => layer.includes(unitOf(file)));
}

const files = sourceFiles(SRC);
const graph = new Map(files.map((file) => [file, importsOf(file)]));
const rel = (file: string): string => path.relative(SRC, file);

describe("src/ layers", () => {
  it("every file belongs to a layer, and every relative import names a file that exists", () => {
    expect(files.filter((f) => layerOf(f) < 0).map(rel)).toEqual([]);
    const missing = [...graph].flatMap(([file, imports]) => imports.filter((i) => !graph.has(i)).map((i) => `${rel(file)} -> ${rel(i)}`));
    expect(missing).toEqual([]);
  });

  it("no file imports from a higher layer", () => {
    const upward = [...graph].flatMap(([file, imports]) => imports.filter((i) => layerOf(i) > layerOf(file)).map((i) => `${rel(file)} -> ${rel(i)}`));
    expect(upward).toEqual([]);
  });

  it("no import cycles between files", () => {
    const state = new Map<string, "open" | "done">();
    const cycles: string[] = [];
    const visit = (file: string, trail: string[]): void => {
      if (state.get(file) === "done") return;
      if (state.get(file) === "open") {
        cycles.push([...trail.slice(trail.indexOf(file)), file].map(rel).join(" -> "));
        return;
      }
      state.set(file, "open");
      for (const next of graph.get(file) ?? []) visit(next, [...trail, file]);
      state.set(file, "done");
    };
    for (const file of files) visit(file, []);
    expect(cycles).toEqual([]);
  });

  it("reads the imports it checks", () => {
    // Guards the test itself: a parser that found no imports would pass everything above.
    expect(importsOf(path.join(SRC, "regcache.ts")).length).toBeGreaterThan(10);
    expect(layerOf(path.join(SRC, "cli/main.ts"))).toBeGreaterThan(layerOf(path.join(SRC, "oci/digest.ts")));
  });
});
