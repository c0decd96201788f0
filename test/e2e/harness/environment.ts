import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { skopeoPush } from "./clients.js";
import { writeOciImage, type BuiltImage } from "./oci-image.js";
import { RegcacheProcess } from "./regcache-process.js";
import { TestRegistry, type RegistryOptions } from "./registry.js";
import { createTestPki, type TestPki } from "./test-ca.js";

/** The name clients use for the test registry; regcache maps it to loopback (Go clients never proxy loopback). */
export const REGISTRY_HOST = "quay.test";
/** Names the test PKI also certifies, for FakeUpstream servers. */
export const FAKE_HOSTS = ["slow.test", "bad.test", "flaky.test", "cdn.test", "down.test", "open.test", "close.test"];

export interface PushedImage extends BuiltImage {
  repo: string;
  tag: string;
  /** quay.test/<repo>:<tag> */
  ref: string;
}

/**
 * One test world: a test PKI, a real registry with TLS, a way to push images,
 * and regcache processes wired to reach the registry as quay.test.
 */
export class TestEnvironment {
  readonly dir: string;
  readonly pki: TestPki;
  readonly registry: TestRegistry;
  private readonly proxies: RegcacheProcess[] = [];
  private counter = 0;

  /** `names`: more names the test PKI's server certificate is valid for (other registries of this world). */
  constructor(name: string, registryOptions: Partial<RegistryOptions> = {}, names: string[] = []) {
    this.dir = mkdtempSync(path.join(tmpdir(), `regcache-${name}-`));
    this.pki = createTestPki(path.join(this.dir, "pki"), [REGISTRY_HOST, ...FAKE_HOSTS, ...names, "localhost", "127.0.0.1", "::1"]);
    this.registry = new TestRegistry({ dir: path.join(this.dir, "registry"), pki: this.pki, ...registryOptions });
  }

  async start(): Promise<void> {
    await this.registry.start();
  }

  async pushImage(repo: string, tag: string, layerSizes: number[], platforms: 1 | 2 = 1, creds?: string): Promise<PushedImage> {
    const layout = path.join(this.dir, "layouts", `${repo.replace(/\//g, "_")}-${tag}-${this.counter++}`);
    const built = writeOciImage(layout, tag, layerSizes, platforms);
    await skopeoPush(layout, tag, this.registry.url, repo, this.pki.certDir, creds);
    return { ...built, repo, tag, ref: `${REGISTRY_HOST}/${repo}:${tag}` };
  }

  /** A regcache process for this world; `name` separates data dirs, certs are shared like replicas share a Secret. */
  regcache(name = "proxy", extraArgs: string[] = [], options: { upstreamCa?: boolean; env?: Record<string, string>; dataDir?: string; node?: string; wrapper?: string[] } = {}): RegcacheProcess {
    const registryRoute = this.registry.port > 0 ? ["--resolve", `${REGISTRY_HOST}:443=127.0.0.1:${this.registry.port}`] : [];
    const args = [...registryRoute, ...(options.upstreamCa === false ? [] : ["--upstream-ca", this.pki.caCert]), ...extraArgs];
    const proxy = new RegcacheProcess(options.dataDir ?? path.join(this.dir, `data-${name}`), path.join(this.dir, "certs"), args, options.env, options.node, options.wrapper);
    this.proxies.push(proxy);
    return proxy;
  }

  path(...parts: string[]): string {
    return path.join(this.dir, ...parts);
  }

  async cleanup(): Promise<void> {
    for (const proxy of this.proxies) await proxy.stop("SIGKILL").catch(() => undefined);
    await this.registry.stop();
    if (process.env.REGCACHE_KEEP_TEST_DIRS !== "1") rmSync(this.dir, { recursive: true, force: true });
  }
}
