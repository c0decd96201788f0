import { expect } from "vitest";
import { curlThrough, skopeoPull, type ProxyEnv } from "./clients.js";
import { REGISTRY_HOST, type PushedImage, type TestEnvironment } from "./environment.js";

/**
 * Issue 10's rule seen from a client: an anonymous and a wrong-credential pull of a private image
 * through `proxy` fail (online, with upstream's 401), and so does a read of its first layer.
 */
export async function expectOthersRefused(env: TestEnvironment, proxy: ProxyEnv, image: PushedImage, phase: "online" | "offline", wrongCreds: string): Promise<void> {
  for (const creds of [undefined, wrongCreds]) {
    const refused = await skopeoPull(proxy, image.ref, env.path(`${phase}-${creds ?? "anon"}`), { creds });
    expect(refused.ok, `${phase}, ${creds ?? "anonymous"}`).toBe(false);
    if (phase === "online") expect(refused.stderr).toMatch(/401|unauthorized|authentication required/i);
  }
  const layer = await curlThrough(proxy, `https://${REGISTRY_HOST}/v2/${image.repo}/blobs/${image.layerDigests[0]}`);
  expect([401, 403]).toContain(layer.status);
}
