import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { Metrics, type MetricsSources } from "../../../src/stats/metrics.js";

const ROOT = path.resolve(__dirname, "../../..");
const RULES_FILE = path.join(ROOT, "deploy/helm/regcache/files/prometheus-rules.yaml");
const RULE_TESTS = path.join(ROOT, "test/monitoring/regcache-alerts.test.yaml");
const DASHBOARD_FILE = path.join(ROOT, "deploy/helm/regcache/files/grafana-dashboard.json");

interface Rule {
  alert: string;
  expr: string;
  labels: { severity: string };
  annotations: { summary: string; description: string };
}
const rules = (parse(readFileSync(RULES_FILE, "utf8")) as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules);
const dashboard = JSON.parse(readFileSync(DASHBOARD_FILE, "utf8")) as { panels: { id: number; title: string; targets: { expr: string }[] }[]; templating: { list: { name: string }[] } };

/** What regcache exports, with its label names: every metric exists with peers and a shared tier. Names only, the sources are never read. */
const exported = new Map(new Metrics({ cluster: {}, shared: {} } as unknown as MetricsSources).registry.getMetricsAsArray().map((m) => [m.name, (m as unknown as { labelNames?: string[] }).labelNames ?? []]));
/** Labels Prometheus adds to every scraped series (a ServiceMonitor adds namespace and pod), and a histogram's bucket bound. */
const TARGET_LABELS = ["namespace", "pod", "instance", "job", "service", "container", "endpoint", "le"];

/** Every metric a PromQL expression selects, with the label names it matches on or groups by. */
function queried(expr: string): { metric: string; labels: string[] }[] {
  const grouping = [...expr.matchAll(/\b(?:by|on|without|ignoring)\s*\(([^)]*)\)/g)].flatMap((m) => m[1]!.split(",").map((l) => l.trim()).filter(Boolean));
  return [...expr.matchAll(/\b(regcache_[a-z_]+)(\{([^}]*)\})?/g)].map((m) => ({
    // A histogram's series are its name with _bucket, _sum or _count.
    metric: exported.has(m[1]!) ? m[1]! : m[1]!.replace(/_(bucket|sum|count)$/, ""),
    labels: [...(m[3] ?? "").matchAll(/([a-z_]+)\s*(?:=~|!~|!=|=)/g)].map((l) => l[1]!).concat(grouping),
  }));
}

function unknownIn(exprs: string[]): string[] {
  return exprs.flatMap((expr) =>
    queried(expr).flatMap(({ metric, labels }) => {
      if (!exported.has(metric)) return [`${metric} (no such metric)`];
      const known = new Set([...exported.get(metric)!, ...TARGET_LABELS]);
      return labels.filter((l) => !known.has(l)).map((l) => `${metric}: label ${l}`);
    }),
  );
}

describe("alerts (deploy/helm/regcache/files/prometheus-rules.yaml)", () => {
  it("cover an upstream down, serving stale, a disk nearly full, full or read-only, damaged files, missing peers, the object store or Redis down, fills failing", () => {
    expect(rules.map((r) => r.alert).sort()).toEqual(
      ["RegcacheDamagedFiles", "RegcacheDiskFull", "RegcacheDiskNearlyFull", "RegcacheDiskReadOnly", "RegcacheFillsFailing", "RegcacheObjectStoreDown", "RegcachePeersBelowExpected", "RegcacheRedisDown", "RegcacheServingStale", "RegcacheUpstreamDown"].sort(),
    );
    for (const rule of rules) {
      expect(["info", "warning", "critical"], rule.alert).toContain(rule.labels.severity);
      expect(rule.annotations.summary, rule.alert).toBeTruthy();
    }
  });

  it("query only metrics and labels regcache exports", () => {
    expect(unknownIn(rules.map((r) => r.expr))).toEqual([]);
  });

  it("the metric check is real: an unknown metric or label is found", () => {
    expect(unknownIn(['regcache_upstream_upp == 0', 'regcache_upstream_up{hots="x"} == 0', 'sum by (pod, part) (regcache_stale_responses_total)'])).toEqual([
      "regcache_upstream_upp (no such metric)",
      "regcache_upstream_up: label hots",
      "regcache_stale_responses_total: label part",
    ]);
  });

  it("each alert has a promtool test in which it fires", () => {
    const tests = (parse(readFileSync(RULE_TESTS, "utf8")) as { tests: { alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }[] }).tests.flatMap((t) => t.alert_rule_test);
    for (const rule of rules) expect(tests.some((t) => t.alertname === rule.alert && t.exp_alerts.length > 0), rule.alert).toBe(true);
  });

  // promtool is Debian's `prometheus` package (.ci/install-test-deps.sh); a laptop without it skips, CI never.
  const promtool = ((): string | undefined => {
    try {
      execFileSync("sh", ["-c", "command -v promtool"], { stdio: "ignore" });
      return "promtool";
    } catch {
      if (process.env.CI === "true") throw new Error("CI=true but promtool is missing (.ci/install-test-deps.sh installs Debian's prometheus)");
      return undefined;
    }
  })();

  it.skipIf(!promtool)("promtool checks the rules and passes their tests", () => {
    expect(execFileSync("promtool", ["check", "rules", RULES_FILE], { encoding: "utf8" })).toContain(`SUCCESS: ${rules.length} rules found`);
    expect(execFileSync("promtool", ["test", "rules", RULE_TESTS], { encoding: "utf8" })).toContain("SUCCESS");
  });
});

describe("the Grafana dashboard (deploy/helm/regcache/files/grafana-dashboard.json)", () => {
  const exprs = dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr));

  it("queries only metrics and labels regcache exports", () => {
    expect(exprs.length).toBeGreaterThan(10);
    expect(unknownIn(exprs)).toEqual([]);
  });

  it("shows what an outage needs: registries down, stale answers, fill failures, peers, disk", () => {
    for (const metric of ["regcache_upstream_up", "regcache_stale_responses_total", "regcache_fill_failures_total", "regcache_peers_live", "regcache_disk_free_bytes", "regcache_requests_total"]) {
      expect(exprs.some((e) => e.includes(metric)), metric).toBe(true);
    }
  });

  it("has unique panel ids, and every query takes the data source and namespace variables", () => {
    expect(new Set(dashboard.panels.map((p) => p.id)).size).toBe(dashboard.panels.length);
    expect(dashboard.templating.list.map((v) => v.name)).toEqual(["datasource", "namespace"]);
    for (const expr of exprs) for (const { metric } of queried(expr)) expect(expr, metric).toMatch(new RegExp(`${metric}(_bucket)?\\{[^}]*namespace=~"\\$namespace"`));
  });
});
