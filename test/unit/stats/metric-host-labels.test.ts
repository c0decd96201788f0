import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createLogger } from "../../../src/log/logger.js";
import { configuredHosts, MAX_HOST_LABELS, MetricHostLabels } from "../../../src/stats/metric-host-labels.js";

const dir = mkdtempSync(path.join(tmpdir(), "metric-hosts-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const logger = createLogger("silent");
const DAY = 86_400_000;

describe("metric host labels", () => {
  it("a host that answered keeps its label through a restart, before it answers again", async () => {
    const file = path.join(dir, "restart.json");
    const before = new MetricHostLabels(file, [], logger);
    await before.load();
    expect(before.label("quay.test")).toBe("other");
    before.answered("quay.test");
    expect(before.label("quay.test")).toBe("quay.test");
    await before.save();
    const after = new MetricHostLabels(file, [], logger);
    expect(after.label("quay.test")).toBe("other");
    await after.load();
    expect(after.label("quay.test")).toBe("quay.test");
    expect(after.label("typo.test")).toBe("other");
  });

  it("configured registries have labels from the start; the long tail folds into other", async () => {
    let now = 1_000 * DAY;
    const labels = new MetricHostLabels(path.join(dir, "tail.json"), ["Quay.IO", "ghcr.io"], logger, () => now);
    await labels.load();
    expect(labels.label("quay.io")).toBe("quay.io");
    for (let i = 0; i < 100; i++) {
      now += 1;
      labels.answered(`r${i}.test`);
    }
    expect(labels.label(`r${MAX_HOST_LABELS - 3}.test`)).toBe(`r${MAX_HOST_LABELS - 3}.test`);
    expect(labels.label(`r${MAX_HOST_LABELS - 2}.test`)).toBe("other");
    expect(labels.label("ghcr.io")).toBe("ghcr.io");
  });

  it("after a restart the most recently answered hosts come back first; those silent for a week do not", async () => {
    const file = path.join(dir, "recent.json");
    const now = 1_000 * DAY;
    const hosts: Record<string, number> = { "old.test": now - 8 * DAY };
    for (let i = 0; i < MAX_HOST_LABELS + 10; i++) hosts[`h${i}.test`] = now - i * 1000;
    writeFileSync(file, JSON.stringify({ hosts }));
    const labels = new MetricHostLabels(file, ["configured.test"], logger, () => now);
    await labels.load();
    expect(labels.label("configured.test")).toBe("configured.test");
    expect(labels.label("h0.test")).toBe("h0.test");
    expect(labels.label(`h${MAX_HOST_LABELS - 2}.test`)).toBe(`h${MAX_HOST_LABELS - 2}.test`);
    expect(labels.label(`h${MAX_HOST_LABELS - 1}.test`)).toBe("other");
    expect(labels.label("old.test")).toBe("other");
  });

  it("an unreadable file is an empty one, and a write that fails costs nothing but the names", async () => {
    const broken = path.join(dir, "broken.json");
    writeFileSync(broken, "{not json");
    const labels = new MetricHostLabels(broken, [], logger);
    await labels.load();
    expect(labels.label("a.test")).toBe("other");
    const unwritable = new MetricHostLabels(path.join(dir, "broken.json", "under-a-file.json"), [], logger);
    unwritable.answered("a.test");
    await unwritable.save();
    expect(unwritable.label("a.test")).toBe("a.test");
    expect(existsSync(path.join(dir, "broken.json", "under-a-file.json"))).toBe(false);
  });

  it("writes a new label at once, and repeated answers at most once a minute", async () => {
    const file = path.join(dir, "writes.json");
    let now = 1_000 * DAY;
    const labels = new MetricHostLabels(file, [], logger, () => now);
    labels.answered("a.test");
    await labels.save();
    const first = readFileSync(file, "utf8");
    now += 1000;
    labels.answered("a.test");
    await new Promise((r) => setTimeout(r, 20));
    expect(readFileSync(file, "utf8")).toBe(first);
    await labels.save();
    expect(JSON.parse(readFileSync(file, "utf8")).hosts["a.test"]).toBe(now);
  });

  it("configured hosts: the CA's name constraints, exact --allow-host names, --credentials hosts; not --resolve", () => {
    expect(configuredHosts({ allowHosts: ["*.corp.example", "Registry.Corp.Example"] }, ["quay.io", "docker.io"], ["ghcr.io", "quay.io"])).toEqual(["quay.io", "docker.io", "registry.corp.example", "ghcr.io"]);
  });
});
