import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { DaemonSet } from "kubernetes-models/apps/v1/DaemonSet";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1/NetworkPolicy";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Service } from "kubernetes-models/v1/Service";
import { describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import { serveOptions } from "../../../src/cli/serve-options.js";
import { kubeTools, type KubeTools } from "./kube-tools.js";

const ROOT = path.resolve(__dirname, "../../..");
const CHART = path.join(ROOT, "deploy/helm/regcache");
const tools = kubeTools();
const unavailable = typeof tools === "string" ? tools : undefined;
const { helm, kubectl } = (typeof tools === "string" ? {} : tools) as KubeTools;

const MODELS: Record<string, new (data: any) => { validate(): void }> = {
  "apps/v1/Deployment": Deployment,
  "apps/v1/DaemonSet": DaemonSet,
  "networking.k8s.io/v1/NetworkPolicy": NetworkPolicy,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
  "v1/Service": Service,
  "v1/ConfigMap": ConfigMap,
};

/** YAML as Kubernetes reads it (1.1: `defaultMode: 0440` is octal). */
const documents = (text: string): any[] =>
  parseAllDocuments(text, { version: "1.1" })
    .map((d) => d.toJS())
    .filter((o) => o !== null);

const render = (...set: string[]): any[] => documents(execFileSync(helm, ["template", "regcache", CHART, "--namespace", "regcache", ...set.flatMap((s) => ["--set", s])], { encoding: "utf8" }));
const kind = (objects: any[], k: string, name?: string): any => objects.find((o) => o.kind === k && (name === undefined || o.metadata.name === name));

/** Helm's bookkeeping labels, and the release label that keeps two releases' selectors apart: not part of what the objects do. */
const RELEASE_LABELS = ["helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance"];
function withoutReleaseLabels(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutReleaseLabels);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).filter(([k]) => !RELEASE_LABELS.includes(k)).map(([k, v]) => [k, withoutReleaseLabels(v)]));
  }
  return value;
}

const byKindAndName = (a: any, b: any): number => `${a.kind}/${a.metadata.name}`.localeCompare(`${b.kind}/${b.metadata.name}`);

describe.skipIf(unavailable !== undefined)(`deploy/helm/regcache ${unavailable ? `(skipped: ${unavailable})` : "(helm 4 and kubectl 1.33)"}`, () => {
  it("helm lint passes with the defaults and with every option on", () => {
    expect(execFileSync(helm, ["lint", CHART], { encoding: "utf8" })).toContain("1 chart(s) linted, 0 chart(s) failed");
    const all = ["mirror.enabled=true", "mirror.names={10.96.0.50}", "nodeSetup.mode=both", "sharedTier.enabled=true", "monitoring.serviceMonitor.enabled=true", "monitoring.prometheusRule.enabled=true", "monitoring.grafanaDashboard.enabled=true"];
    expect(execFileSync(helm, ["lint", CHART, ...all.flatMap((s) => ["--set", s])], { encoding: "utf8" })).toContain("0 chart(s) failed");
  });

  it("the default render is the kustomize base, object for object, in the release's namespace (which helm creates)", () => {
    const kustomize = documents(execFileSync(kubectl, ["kustomize", path.join(ROOT, "deploy/kubernetes")], { encoding: "utf8" }));
    expect(kind(kustomize, "Namespace").metadata.name).toBe("regcache");
    const expected = kustomize.filter((o) => o.kind !== "Namespace").sort(byKindAndName);
    const rendered = render().sort(byKindAndName);
    expect(rendered.map((o) => `${o.kind}/${o.metadata.name}`)).toEqual(expected.map((o) => `${o.kind}/${o.metadata.name}`));
    expect(withoutReleaseLabels(rendered)).toEqual(expected);
    // What the comparison left out is only ever Helm's own: each selector also names the release.
    expect(kind(rendered, "Deployment").spec.selector.matchLabels).toEqual({ "app.kubernetes.io/name": "regcache", "app.kubernetes.io/instance": "regcache" });
  });

  it("every object validates against the Kubernetes schema, with every option on", () => {
    const objects = render("mirror.enabled=true", "mirror.names={10.96.0.50}", "nodeSetup.mode=both", "sharedTier.enabled=true", "monitoring.serviceMonitor.enabled=true", "monitoring.prometheusRule.enabled=true", "monitoring.grafanaDashboard.enabled=true");
    const crds = objects.filter((o) => o.apiVersion === "monitoring.coreos.com/v1");
    expect(crds.map((o) => o.kind).sort()).toEqual(["PrometheusRule", "ServiceMonitor"]);
    for (const object of objects.filter((o) => !crds.includes(o))) {
      const Model = MODELS[`${object.apiVersion}/${object.kind}`];
      expect(Model, `${object.apiVersion}/${object.kind}`).toBeDefined();
      expect(() => new Model!(object).validate(), `${object.kind}/${object.metadata.name}`).not.toThrow();
    }
  });

  it("the schema check is real: a broken render fails it", () => {
    const d = kind(render("replicas=three"), "Deployment");
    expect(() => new Deployment(d).validate()).toThrow();
  });

  it("a second release in the same namespace selects only its own pods and reaches its own Service", () => {
    const objects = documents(execFileSync(helm, ["template", "mirror-b", CHART, "--namespace", "regcache"], { encoding: "utf8" }));
    const d = kind(objects, "Deployment");
    expect(d.metadata.name).toBe("mirror-b-regcache");
    expect(d.spec.selector.matchLabels["app.kubernetes.io/instance"]).toBe("mirror-b");
    const env = Object.fromEntries(d.spec.template.spec.containers[0].env.map((e: { name: string; value?: string }) => [e.name, e.value]));
    expect(env.REGCACHE_PEERS_DNS).toBe("mirror-b-regcache-peers.regcache.svc.cluster.local");
    const script = kind(objects, "DaemonSet").spec.template.spec.containers[0].args[0] as string;
    // The service link Kubernetes injects for the Service "mirror-b-regcache".
    expect(script).toContain('--proxy "http://${MIRROR_B_REGCACHE_SERVICE_HOST}:3128"');
    expect(kind(objects, "NetworkPolicy").spec.podSelector.matchLabels["app.kubernetes.io/instance"]).toBe("mirror-b");
  });

  it("the shared tier sets the object store, the index from the Secret, the shared instance secret, and a smaller local tier; the replicas stay peers", () => {
    const objects = render("sharedTier.enabled=true");
    const c = kind(objects, "Deployment").spec.template.spec;
    const env = Object.fromEntries(c.containers[0].env.map((e: { name: string; value?: string; valueFrom?: unknown }) => [e.name, e.value ?? e.valueFrom]));
    const known = new Set(serveOptions().map((o) => o.envVar));
    for (const name of Object.keys(env).filter((n) => n.startsWith("REGCACHE_"))) expect(known.has(name), name).toBe(true);
    expect(env.REGCACHE_BLOB_STORE).toMatch(/^s3:\/\//);
    expect(env.REGCACHE_INDEX).toEqual({ secretKeyRef: { name: "regcache-shared-storage", key: "REGCACHE_INDEX" } });
    expect(env.REGCACHE_MAX_CACHE_SIZE).toBe("15GiB");
    expect(c.volumes.find((v: any) => v.name === "data").emptyDir.sizeLimit).toBe("20Gi");
    expect(c.containers[0].volumeMounts).toContainEqual({ name: "shared-secret", mountPath: "/shared-secret", readOnly: true });
    // The peers are the tier between the object store and upstream: the headless Service --peers-dns names, and its port.
    const peers = objects.find((o) => o.kind === "Service" && o.spec.clusterIP === "None");
    expect(peers.spec.ports.map((p: { targetPort: string }) => p.targetPort)).toEqual(["peer"]);
    expect(c.containers[0].ports.map((p: { name: string }) => p.name)).toContain("peer");
    expect(env.REGCACHE_PEERS_DNS).toMatch(new RegExp(`^${peers.metadata.name}\\.`));
  });

  it("values reach the objects: image, resources, node CIDRs, monitoring namespace, runtime, uninstall", () => {
    const objects = render(
      "image.repository=registry.internal/regcache",
      "image.tag=9.9.9",
      "resources.limits.memory=2Gi",
      "networkPolicy.nodeCidrs={192.168.0.0/16,172.16.0.0/12}",
      "networkPolicy.monitoringNamespace=observability",
      "nodeSetup.runtime=crio",
      "nodeSetup.action=uninstall",
      "extraEnv[0].name=REGCACHE_TAG_TTL",
      "extraEnv[0].value=5m",
    );
    const c = kind(objects, "Deployment").spec.template.spec.containers[0];
    expect(c.image).toBe("registry.internal/regcache:9.9.9");
    expect(c.resources.limits.memory).toBe("2Gi");
    expect(c.env).toContainEqual({ name: "REGCACHE_TAG_TTL", value: "5m" });
    const ds = kind(objects, "DaemonSet").spec.template.spec.containers[0];
    expect(ds.image).toBe("registry.internal/regcache:9.9.9");
    expect(ds.args[0]).toContain("--runtime crio");
    expect(ds.env).toContainEqual({ name: "NODE_SETUP_ACTION", value: "uninstall" });
    const np = kind(objects, "NetworkPolicy").spec.ingress;
    expect(np[0].from.slice(0, 2)).toEqual([{ ipBlock: { cidr: "192.168.0.0/16" } }, { ipBlock: { cidr: "172.16.0.0/12" } }]);
    expect(np[1].from).toEqual([{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "observability" } } }]);
  });

  it("the mirror: mirror.enabled opens --mirror-listen with mirror.names; nodeSetup.mode and mirrorUrl reach the DaemonSet; a mirror mode without a mirror, or a mirror without names, is refused", () => {
    const objects = render("mirror.enabled=true", "mirror.names={10.96.0.50,regcache.internal}", "nodeSetup.mode=both");
    const c = kind(objects, "Deployment").spec.template.spec.containers[0];
    expect(c.env).toContainEqual({ name: "REGCACHE_MIRROR_LISTEN", value: "0.0.0.0:5443" });
    expect(c.env).toContainEqual({ name: "REGCACHE_MIRROR_NAME", value: "10.96.0.50,regcache.internal" });
    expect(c.ports).toContainEqual({ name: "mirror", containerPort: 5443, protocol: "TCP" });
    const ds = kind(objects, "DaemonSet").spec.template.spec.containers[0];
    expect(ds.env).toContainEqual({ name: "MODE", value: "both" });
    expect(ds.args[0]).toContain('--mirror "${MIRROR_URL:-https://${REGCACHE_SERVICE_HOST}:5443}"');
    expect(kind(render(), "Deployment").spec.template.spec.containers[0].env.map((e: { name: string }) => e.name)).not.toContain("REGCACHE_MIRROR_LISTEN");
    // A mirror elsewhere needs no mirror port here.
    const elsewhere = kind(render("nodeSetup.mode=mirror", "nodeSetup.mirrorUrl=https://mirror.internal:5443"), "DaemonSet").spec.template.spec.containers[0];
    expect(elsewhere.env).toContainEqual({ name: "MIRROR_URL", value: "https://mirror.internal:5443" });
    const refused = (...set: string[]): string => {
      try {
        render(...set);
        return "rendered";
      } catch (err) {
        return String((err as { stderr?: string }).stderr);
      }
    };
    expect(refused("nodeSetup.mode=mirror")).toContain("nodeSetup.mode mirror needs a mirror: mirror.enabled, or nodeSetup.mirrorUrl");
    expect(refused("mirror.enabled=true")).toContain("mirror.names: the names nodes reach the mirror by");
  });

  it("the ServiceMonitor scrapes the admin port of the Service; the PrometheusRule carries the tested rules file; the dashboard is the JSON file", () => {
    const objects = render("monitoring.serviceMonitor.enabled=true", "monitoring.prometheusRule.enabled=true", "monitoring.grafanaDashboard.enabled=true");
    const monitor = kind(objects, "ServiceMonitor");
    const service = kind(objects, "Service", "regcache");
    expect(monitor.spec.selector.matchLabels).toEqual(service.spec.selector);
    expect(monitor.spec.endpoints).toEqual([{ port: "admin", path: "/metrics", interval: "30s" }]);
    expect(service.spec.ports.map((p: { name: string }) => p.name)).toContain("admin");
    const rules = parse(readFileSync(path.join(CHART, "files/prometheus-rules.yaml"), "utf8"));
    expect(kind(objects, "PrometheusRule").spec).toEqual(rules);
    const dashboard = kind(objects, "ConfigMap", "regcache-dashboard");
    expect(dashboard.metadata.labels.grafana_dashboard).toBe("1");
    expect(JSON.parse(dashboard.data["regcache.json"])).toEqual(JSON.parse(readFileSync(path.join(CHART, "files/grafana-dashboard.json"), "utf8")));
  });

  it("the notes print the CA command with the name constraints, registry.k8s.io among them", () => {
    const notes = execFileSync(helm, ["install", "regcache", CHART, "--namespace", "regcache", "--dry-run=client"], { encoding: "utf8" });
    expect(notes).toContain("npx regcache ca init --certs-dir ./ca --name-constraint docker.io --name-constraint registry.k8s.io --name-constraint quay.io --name-constraint ghcr.io");
    expect(notes).toContain("--set nodeSetup.action=uninstall");
  });
});
