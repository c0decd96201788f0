import type { Send } from "./client.js";

export interface RegistryToken {
  token: string;
  /** Seconds. */
  expiresIn: number;
}

/** A token's lifetime when the answer gives none (distribution's token spec). */
export const DEFAULT_TOKEN_SECONDS = 60;

/**
 * Fetches a token from a Bearer challenge's realm (distribution token spec):
 * GET realm?service=...&scope=..., anonymously or with Basic credentials.
 * Only HTTPS realms are used; anything unexpected yields undefined, never a throw on input.
 */
export async function requestRegistryToken(
  send: Send,
  params: Record<string, string>,
  authorization?: string,
): Promise<RegistryToken | undefined> {
  let realm: URL;
  try {
    realm = new URL(params.realm ?? "");
  } catch {
    return undefined;
  }
  if (realm.protocol !== "https:") return undefined;
  if (params.service) realm.searchParams.set("service", params.service);
  if (params.scope) realm.searchParams.set("scope", params.scope);
  const response = await send({
    host: realm.hostname,
    port: Number(realm.port) || 443,
    method: "GET",
    path: `${realm.pathname}${realm.search}`,
    headers: authorization ? { authorization } : {},
    anonymous: true,
  });
  if (response.statusCode !== 200) {
    await response.body.dump();
    return undefined;
  }
  const body = (await response.body.json().catch(() => ({}))) as { token?: string; access_token?: string; expires_in?: number };
  const token = body.token ?? body.access_token;
  return token ? { token, expiresIn: typeof body.expires_in === "number" ? body.expires_in : DEFAULT_TOKEN_SECONDS } : undefined;
}
