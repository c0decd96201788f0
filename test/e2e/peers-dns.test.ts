import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { corruptBlobsInLayout, skopeoPull } from "./harness/clients.js";
import { TestDnsServer, withResolvConf } from "./harness/dns-server.js";
import { TestEnvironment, type PushedImage } from "./harness/environment.js";
import { freePort, waitFor } from "./harness/ports.js";
import { CLI, type RegcacheProcess } from "./harness/regcache-process.js";
import { IN_CI, isRoot, missingTools } from "./harness/tools.js";

const exec = promisify(execFile);
const missing = missingTools("docker-registry", "skopeo", "openssl", "dnsmasq", "unshare", "mount");
// A mount namespace for each replica's resolv.conf, and port 53 for the DNS server.
if (IN_CI && !isRoot()) throw new Error("CI=true but not running as root: the --peers-dns tests cannot run");

/** The headless Service's name: answered by the test's DNS server only (/etc/hosts must not name it). */
const SERVICE = "regcache-peers.test";

interface PeerView {
  self: string;
  members: { address: string; live: boolean }[];
}

/**
 * Replicas that find each other as in Kubernetes: each on an address of its own (a pod IP) with
 * the same peer port, --peers-dns naming a headless Service, resolved by the system resolver
 * (getaddrinfo) through a real DNS server whose records the test changes as Kubernetes would.
 */
describe.skipIf(missing.length > 0 || !isRoot())("replicas found through --peers-dns act as one cache", () => {
  let env: TestEnvironment;
  let dns: TestDnsServer;
  let peerPort: number;
  let first: PushedImage;
  let second: PushedImage;
  const replicas = new Map<string, RegcacheProcess>();
  const [A, B, C, D] = ["127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"] as const;

  const replica = (ip: string, service = SERVICE): RegcacheProcess => {
    const advertise = `${ip}:${peerPort}`;
    const args = ["--peer-listen", advertise, "--advertise", advertise, "--peers-dns", service, "--failure-threshold", "2", "--probe-interval", "60s"];
    const r = env.regcache(`dns-${ip}`, args, { wrapper: withResolvConf(dns.resolvConf) });
    replicas.set(ip, r);
    return r;
  };
  const peerView = async (r: RegcacheProcess): Promise<PeerView> => ((await (await fetch(`${r.proxyUrl}/api/stats`)).json()) as { peers: PeerView }).peers;
  const livePeers = async (ip: string): Promise<string[]> =>
    (await peerView(replicas.get(ip)!)).members
      .filter((m) => m.live)
      .map((m) => m.address)
      .sort();
  const addresses = (...ips: string[]): string[] => ips.map((ip) => `${ip}:${peerPort}`).sort();
  /** Waits until each replica named lists exactly the others named as its live peers. */
  const seeEachOther = (ips: string[], what: string): Promise<void> =>
    waitFor(async () => (await Promise.all(ips.map(async (ip) => JSON.stringify(await livePeers(ip)) === JSON.stringify(addresses(...ips.filter((o) => o !== ip)))))).every(Boolean), 30_000, what);
  const pull = async (ip: string, image: PushedImage, label: string): Promise<string> => {
    const dest = env.path(`pull-${label}`);
    const pulled = await skopeoPull(replicas.get(ip)!, image.ref, dest);
    expect(pulled.ok, pulled.stderr).toBe(true);
    expect(corruptBlobsInLayout(dest).corrupt).toEqual([]);
    return dest;
  };

  beforeAll(async () => {
    // nsswitch asks files before dns: a line in /etc/hosts would answer instead of the DNS server.
    if (readFileSync("/etc/hosts", "utf8").includes(SERVICE)) throw new Error(`/etc/hosts names ${SERVICE}: the test would not reach its DNS server`);
    env = new TestEnvironment("peers-dns");
    await env.start();
    first = await env.pushImage("team/dns-first", "v1", [3_000_000, 800_000]);
    second = await env.pushImage("team/dns-second", "v1", [1_500_000]);
    await exec(process.execPath, [CLI, "ca", "init", "--certs-dir", env.path("certs")]);
    peerPort = await freePort();
    dns = new TestDnsServer(env.dir);
    await dns.setRecords(SERVICE, [A, B, C]);
    await dns.start();
    await Promise.all([A, B, C].map((ip) => replica(ip).start()));
  });
  afterAll(async () => {
    await dns?.stop();
    await env?.cleanup();
  });

  it("each replica lists the others live, found through DNS, and never itself", async () => {
    await seeEachOther([A, B, C], "every replica to see the two others live");
    for (const ip of [A, B, C]) {
      const view = await peerView(replicas.get(ip)!);
      expect(view.self).toBe(`${ip}:${peerPort}`);
      expect(view.members.map((m) => m.address)).not.toContain(view.self);
    }
  });

  it("an image pulled through one replica pulls through another with no upstream blob GET", async () => {
    await pull(A, first, "first-through-a");
    await waitFor(() => first.layerDigests.every((l) => env.registry.blobGets(l).length > 0), 10_000, "the registry's log lines of the first pull");
    env.registry.clearLog();
    const before = replicas.get(B)!.requestLogs().length;
    await pull(B, first, "first-through-b");
    const blobReads = replicas.get(B)!.requestLogs().slice(before).filter((l) => String(l.path).includes("/blobs/"));
    expect(blobReads.length).toBeGreaterThan(0);
    // The owner's cache (PEER) or the copy B keeps (HIT): never a fill of B's own.
    for (const line of blobReads) expect(["PEER", "HIT"], String(line.path)).toContain(line.cache);
    expect(env.registry.blobGets()).toEqual([]);
  });

  it("a replica that stops is no longer live, one dropped from DNS leaves the member list, and pulls still succeed", async () => {
    await replicas.get(C)!.stop();
    await seeEachOther([A, B], "A and B to see C not live");
    expect((await peerView(replicas.get(A)!)).members.map((m) => m.address)).toContain(`${C}:${peerPort}`);
    await pull(A, second, "second-through-a");
    await dns.setRecords(SERVICE, [A, B]);
    await waitFor(async () => !(await peerView(replicas.get(A)!)).members.some((m) => m.address === `${C}:${peerPort}`), 30_000, "A to drop C from its members");
    await waitFor(async () => !(await peerView(replicas.get(B)!)).members.some((m) => m.address === `${C}:${peerPort}`), 30_000, "B to drop C from its members");
    await replicas.get(A)!.waitForLog((l) => l.msg === "peer is no longer a member" && l.peer === `${C}:${peerPort}`);
    await pull(B, second, "second-through-b");
    await pull(A, first, "first-through-a-again");
  });

  it("a name that does not resolve: one clear log line, and the replica serves alone", async () => {
    const lonely = replica("127.0.0.15", "no-such-service.test");
    await lonely.start();
    const line = await lonely.waitForLog((l) => String(l.msg).startsWith("cannot resolve --peers-dns"));
    expect(line.msg).toBe("cannot resolve --peers-dns; serving as a single replica until it resolves");
    expect(String(line.err)).toContain("ENOTFOUND");
    expect((await peerView(lonely)).members).toEqual([]);
    await pull("127.0.0.15", second, "second-through-lonely");
    expect(lonely.logs.filter((l) => String(l.msg).startsWith("cannot resolve --peers-dns"))).toHaveLength(1);
    await lonely.stop();
  });

  it("with the DNS server down, replicas keep their live peers and still act as one cache; they pick the name up again when it is back", async () => {
    await dns.stop();
    try {
      for (const ip of [A, B]) {
        await replicas.get(ip)!.waitForLog((l) => l.msg === "cannot resolve --peers-dns; keeping the peers it last named", 30_000);
      }
      expect(await livePeers(A)).toEqual(addresses(B));
      expect(await livePeers(B)).toEqual(addresses(A));
      const before = replicas.get(B)!.requestLogs().length;
      await pull(B, first, "first-through-b-dns-down");
      expect(replicas.get(B)!.requestLogs().slice(before).filter((l) => String(l.path).includes("/blobs/") && !["PEER", "HIT"].includes(String(l.cache)))).toEqual([]);
    } finally {
      await dns.start();
    }
    for (const ip of [A, B]) await replicas.get(ip)!.waitForLog((l) => l.msg === "--peers-dns resolves again", 30_000);
    await seeEachOther([A, B], "A and B to still see each other");
  });

  it("a replica added to DNS joins: the others list it live, and it serves their cache with the upstream down", async () => {
    await replica(D).start();
    await dns.setRecords(SERVICE, [A, B, D]);
    await seeEachOther([A, B, D], "A, B and the newcomer to see each other live");
    await env.registry.stop();
    try {
      await pull(D, first, "first-through-newcomer");
      expect(replicas.get(D)!.requestLogs().some((l) => l.cache === "PEER")).toBe(true);
    } finally {
      await env.registry.start();
    }
  });
});
