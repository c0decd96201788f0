import { createHash } from "node:crypto";
import { request, type Dispatcher } from "undici";
import { RegcacheError } from "../errors.js";
import type { ImageReference } from "../oci/image-reference.js";
import { IMAGE_MANIFEST_MEDIA_TYPES, INDEX_MEDIA_TYPES } from "../oci/media-types.js";
import { formatAuthority, type UpstreamRequest } from "../upstream/client.js";
import { basicAuthorization, type HostCredential } from "../upstream/proxy-credentials.js";
import { requestRegistryToken } from "../upstream/token-request.js";
import { parseWwwAuthenticate } from "../upstream/www-authenticate.js";

/** What containerd asks for: every manifest and index type, so the cache holds what nodes will request. */
const MANIFEST_ACCEPT = [...INDEX_MEDIA_TYPES, ...IMAGE_MANIFEST_MEDIA_TYPES].join(", ");
const INDEX_TYPES = new Set(INDEX_MEDIA_TYPES);

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface PullProgress {
  blobsDone: number;
  blobsTotal: number;
  bytes: number;
  /** The sizes the manifests declare for the blobs; undefined when one declares none. */
  bytesTotal: number | undefined;
}

export interface PullResult {
  digest: string;
  manifests: number;
  blobs: number;
  bytes: number;
}

interface Descriptor {
  mediaType?: string;
  digest: string;
  size?: number;
  platform?: Platform;
}

interface ManifestDoc {
  mediaType?: string;
  manifests?: Descriptor[];
  config?: Descriptor;
  layers?: Descriptor[];
}

export class PullError extends RegcacheError {
  constructor(message: string) {
    super("PULL", message);
  }
}

export function parsePlatform(value: string): Platform {
  const [os, architecture, variant] = value.split("/");
  if (!os || !architecture) throw new PullError(`--platform must be os/arch[/variant], got "${value}"`);
  return { os, architecture, ...(variant ? { variant } : {}) };
}

/**
 * Pulls an image the way a registry client does (manifest, then per-platform
 * manifests, then config and layers), through a dispatcher that goes via regcache,
 * discarding the bytes: what matters is that regcache now holds them.
 */
export class ImagePuller {
  /** The Authorization header that last worked, per registry and repository. */
  private readonly authorizations = new Map<string, string>();

  constructor(
    private readonly dispatcher: Dispatcher,
    private readonly platform: Platform | undefined,
    private readonly concurrency = 3,
    /** Per registry host (the --credentials file of `serve`): private images pull with them. */
    private readonly credentials: ReadonlyMap<string, HostCredential> = new Map(),
  ) {}

  async pull(ref: ImageReference, onProgress: (p: PullProgress) => void): Promise<PullResult> {
    const top = await this.getManifest(ref, ref.reference);
    const manifests: ManifestDoc[] = [];
    if (top.doc.manifests && INDEX_TYPES.has(top.mediaType)) {
      const chosen = top.doc.manifests.filter((m) => this.matches(m.platform));
      if (chosen.length === 0) throw new PullError(`no manifest for platform ${this.platformText()}`);
      for (const m of chosen) manifests.push((await this.getManifest(ref, m.digest)).doc);
    } else {
      manifests.push(top.doc);
    }
    const blobs = new Map<string, Descriptor>();
    for (const m of manifests) {
      for (const d of [m.config, ...(m.layers ?? [])]) if (d?.digest) blobs.set(d.digest, d);
    }
    const sizes = [...blobs.values()].map((d) => d.size);
    const bytesTotal = sizes.every((n) => typeof n === "number") ? (sizes as number[]).reduce((a, n) => a + n, 0) : undefined;
    const progress: PullProgress = { blobsDone: 0, blobsTotal: blobs.size, bytes: 0, bytesTotal };
    onProgress(progress);
    const queue = [...blobs.values()];
    const worker = async (): Promise<void> => {
      for (let d = queue.shift(); d; d = queue.shift()) {
        await this.getBlob(ref, d.digest, (n) => {
          progress.bytes += n;
          onProgress(progress);
        });
        progress.blobsDone += 1;
        onProgress(progress);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.concurrency, queue.length) }, worker));
    return { digest: top.digest, manifests: manifests.length, blobs: blobs.size, bytes: progress.bytes };
  }

  private matches(platform: Platform | undefined): boolean {
    if (!this.platform) return true;
    if (!platform) return false;
    return platform.os === this.platform.os && platform.architecture === this.platform.architecture && (!this.platform.variant || platform.variant === this.platform.variant);
  }

  private platformText(): string {
    return this.platform ? [this.platform.os, this.platform.architecture, this.platform.variant].filter(Boolean).join("/") : "any";
  }

  private async getManifest(ref: ImageReference, reference: string): Promise<{ doc: ManifestDoc; mediaType: string; digest: string }> {
    const res = await this.get(ref, `/v2/${ref.name}/manifests/${reference}`, { accept: MANIFEST_ACCEPT });
    const body = Buffer.from(await res.body.arrayBuffer());
    const digest = `sha256:${createHash("sha256").update(body).digest("hex")}`;
    if (reference.startsWith("sha256:") && digest !== reference) throw new PullError(`manifest ${reference} arrived with digest ${digest}`);
    const mediaType = String(res.headers["content-type"] ?? "").split(";")[0]!.trim();
    let doc: ManifestDoc;
    try {
      doc = JSON.parse(body.toString("utf8")) as ManifestDoc;
    } catch {
      throw new PullError(`manifest ${reference} is not JSON`);
    }
    return { doc, mediaType: mediaType || doc.mediaType || "", digest };
  }

  private async getBlob(ref: ImageReference, digest: string, onBytes: (n: number) => void): Promise<void> {
    const res = await this.get(ref, `/v2/${ref.name}/blobs/${digest}`, {});
    const [algorithm] = digest.split(":");
    const hash = createHash(algorithm!);
    for await (const chunk of res.body) {
      hash.update(chunk as Buffer);
      onBytes((chunk as Buffer).length);
    }
    const actual = `${algorithm}:${hash.digest("hex")}`;
    if (actual !== digest) throw new PullError(`blob ${digest} arrived with digest ${actual}`);
  }

  /**
   * GET with the registry auth flow, as a client runs it: on a challenge, Basic with the host's
   * credentials, or a token from the Bearer realm (with them, else anonymous), then one retry.
   * regcache sees the client's Authorization, so what it caches stays as private as upstream has it.
   */
  private async get(ref: ImageReference, path: string, headers: Record<string, string>): Promise<Dispatcher.ResponseData> {
    const origin = `https://${ref.host}${ref.port === 443 ? "" : `:${ref.port}`}`;
    const authKey = `${origin}/${ref.name}`;
    const credential = this.credentials.get(ref.host.toLowerCase());
    if (credential && "token" in credential && !this.authorizations.has(authKey)) this.authorizations.set(authKey, `Bearer ${credential.token}`);
    for (let attempt = 0; attempt < 2; attempt++) {
      const authorization = this.authorizations.get(authKey);
      const res = await request(`${origin}${path}`, { dispatcher: this.dispatcher, headers: { ...headers, ...(authorization ? { authorization } : {}) } });
      if (res.statusCode === 200) return res;
      const text = await res.body.text().catch(() => "");
      if (res.statusCode === 401 && attempt === 0) {
        const challenge = parseWwwAuthenticate(String(res.headers["www-authenticate"] ?? ""))[0];
        const basic = credential && "username" in credential ? basicAuthorization(credential) : undefined;
        if (challenge?.scheme === "basic" && basic) {
          this.authorizations.set(authKey, basic);
          continue;
        }
        if (challenge?.scheme === "bearer" && challenge.params.realm) {
          this.authorizations.set(authKey, `Bearer ${await this.fetchToken(challenge.params, ref.name, basic)}`);
          continue;
        }
      }
      throw new PullError(`GET ${path} answered ${describeRegistryAnswer(res.statusCode, text)}`);
    }
    throw new PullError(`GET ${path} still unauthorized after authenticating`);
  }

  /** The proxy's own token flow (token-request.ts), sent through the prefetch dispatcher. */
  private async fetchToken(params: Record<string, string>, name: string, basic: string | undefined): Promise<string> {
    const send = (req: UpstreamRequest) =>
      request(`https://${formatAuthority(req.host, req.port)}${req.path}`, { dispatcher: this.dispatcher, method: req.method as Dispatcher.HttpMethod, headers: req.headers });
    const token = await requestRegistryToken(send, { ...params, scope: params.scope ?? `repository:${name}:pull` }, basic);
    if (!token) throw new PullError(`token endpoint ${params.realm} gave no token`);
    return token.token;
  }
}

/**
 * An error answer as one readable phrase: the status and the registry's own error code and
 * message (OCI distribution spec, "Error Codes") rather than its raw JSON; anything else is cut
 * at a word boundary. Pure.
 */
export function describeRegistryAnswer(status: number, body: string): string {
  try {
    const first = (JSON.parse(body) as { errors?: { code?: unknown; message?: unknown }[] }).errors?.[0];
    if (first && typeof first.code === "string") return `${status} ${first.code}${typeof first.message === "string" && first.message ? `: ${first.message}` : ""}`;
  } catch {
    // not registry JSON
  }
  const text = body.replace(/\s+/g, " ").trim();
  if (!text) return String(status);
  if (text.length <= 120) return `${status}: ${text}`;
  const cut = text.slice(0, 120);
  return `${status}: ${cut.slice(0, Math.max(cut.lastIndexOf(" "), 60))}…`;
}
