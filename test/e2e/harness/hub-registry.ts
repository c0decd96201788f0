import { createHmac, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import { createServer, request as httpsRequest, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import type { TestPki } from "./test-ca.js";

/** Where the simulator's CDN answers: its host name (certified by the test PKI) and path prefix. */
export const HUB_CDN_HOST = "cdn.test";
const CDN_PREFIX = "/cdn/";
/** The test token server's tokens last 300 s. */
const TOKEN_REUSE_MS = 120_000;
/** How long a signed CDN URL stays valid (Docker Hub's Cloudflare URLs last minutes). */
const SIGNED_URL_TTL_S = 600;
const DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const HOP_BY_HOP = new Set(["connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host"]);
/** What the CDN passes on from the registry's answer: a CDN knows nothing of registry headers. */
const CDN_HEADERS = ["content-type", "content-length", "content-range", "accept-ranges", "etag"];

interface Relayed {
  status: number;
  headers: IncomingMessage["headers"];
  body: Buffer;
  /** The backend closed before its body's end (distribution does, on some errors): relayed cut too. */
  cut?: boolean;
}

/**
 * A registry shaped like Docker Hub, in front of a real distribution registry (with token auth)
 * that holds the content and answers everything else. It reproduces the three things of Hub's
 * shape that a proxy must get right, and nothing more:
 * - blob GETs are answered `307` to a CDN host (cdn.test) with a signed, expiring URL; the CDN
 *   serves the bytes (Range included) with a CDN's headers only, no Docker-Content-Digest;
 * - Bearer token auth: the registry's own challenges and the test token server, as Hub's
 *   auth.docker.io (the realm is the token server's address, not a name);
 * - a manifest that declares no mediaType is labelled the Docker way
 *   (application/vnd.docker.distribution.manifest.v2+json), as Docker Hub and quay.io label
 *   manifests pushed with that Content-Type, whatever the client's Accept; distribution labels the
 *   same bytes OCI.
 * Not reproduced: rate limits, the library/ namespace, auth.docker.io's name.
 */
export class HubShapedRegistry {
  private server: Server | undefined;
  private readonly secret = randomBytes(16);
  private readonly tokens = new Map<string, { token: string; at: number }>();
  port = 0;

  constructor(
    private readonly pki: TestPki,
    /** The distribution registry holding the content: 127.0.0.1:<port>. */
    private readonly backendPort: number,
    /** Credentials the CDN uses to read blobs from the backend: a token for a repository's pull scope. */
    private readonly cdnToken: (repository: string) => Promise<string>,
  ) {}

  async start(): Promise<void> {
    this.server = createServer({ key: readFileSync(this.pki.serverKey), cert: readFileSync(this.pki.serverCert) }, (req, res) => {
      this.route(req, res).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
        res.end(String(err));
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? "/";
    if ((req.headers.host ?? "").split(":")[0] === HUB_CDN_HOST) return this.cdn(req, res, url);
    const path = url.split("?")[0]!;
    const blob = /^\/v2\/(.+)\/blobs\/(sha256:[0-9a-f]{64})$/.exec(path);
    if (blob && req.method === "GET" && !url.includes("?")) return this.redirectBlob(req, res, blob[1]!, blob[2]!);
    if (/^\/v2\/.+\/manifests\/[^/]+$/.test(path) && (req.method === "GET" || req.method === "HEAD") && !url.includes("?")) return this.manifest(req, res);
    relay(res, await this.backend(req.method ?? "GET", url, forwardedHeaders(req), req), req.method);
  }

  /** The registry decides whether this client may have the blob; the bytes then come from the CDN. */
  private async redirectBlob(req: IncomingMessage, res: ServerResponse, name: string, digest: string): Promise<void> {
    const answer = await this.backend("GET", req.url!, forwardedHeaders(req));
    if (answer.status !== 200) return relay(res, answer, req.method);
    const expires = Math.floor(Date.now() / 1000) + SIGNED_URL_TTL_S;
    const location = `https://${HUB_CDN_HOST}${CDN_PREFIX}${name}/${digest}?expires=${expires}&signature=${this.sign(name, digest, expires)}`;
    res.writeHead(307, { location, "content-length": 0, "docker-distribution-api-version": "registry/2.0" }).end();
  }

  /** Undeclared manifests are labelled the Docker way; everything else is the backend's own answer. */
  private async manifest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const headers = forwardedHeaders(req);
    const named = String(headers.accept ?? "").split(",").some((t) => t.split(";")[0]!.trim() === OCI_MANIFEST);
    const accept = named ? headers.accept : [headers.accept, OCI_MANIFEST].filter(Boolean).join(", ");
    const probe = await this.backend("GET", req.url!, { ...headers, accept });
    if (probe.status === 200 && declaresNoMediaType(probe.body)) {
      probe.headers["content-type"] = DOCKER_MANIFEST;
      return relay(res, probe, req.method);
    }
    // The probe was the client's own GET when its Accept already named the OCI type.
    const asked = req.method === "GET" && accept === headers.accept ? probe : await this.backend(req.method ?? "GET", req.url!, headers);
    relay(res, asked, req.method);
  }

  private async cdn(req: IncomingMessage, res: ServerResponse, url: string): Promise<void> {
    const parsed = new URL(url, `https://${HUB_CDN_HOST}`);
    const match = new RegExp(`^${CDN_PREFIX}(.+)/(sha256:[0-9a-f]{64})$`).exec(parsed.pathname);
    const expires = Number(parsed.searchParams.get("expires"));
    if (!match || (req.method !== "GET" && req.method !== "HEAD") || parsed.searchParams.get("signature") !== this.sign(match[1]!, match[2]!, expires) || expires < Date.now() / 1000) {
      res.writeHead(403, { "content-type": "text/plain" }).end("signature invalid or expired\n");
      return;
    }
    const headers: Record<string, string> = { authorization: `Bearer ${await this.repositoryToken(match[1]!)}` };
    for (const name of ["range", "if-range", "if-none-match", "if-match"]) {
      const value = req.headers[name];
      if (typeof value === "string") headers[name] = value;
    }
    const answer = await this.backend(req.method, `/v2/${match[1]}/blobs/${match[2]}`, headers);
    const kept: IncomingMessage["headers"] = {};
    for (const name of CDN_HEADERS) if (answer.headers[name] !== undefined) kept[name] = answer.headers[name];
    relay(res, { ...answer, headers: kept }, req.method);
  }

  /** The CDN's token for a repository, fetched again well before the token server's 5 minutes run out. */
  private async repositoryToken(repository: string): Promise<string> {
    const kept = this.tokens.get(repository);
    if (kept && Date.now() - kept.at < TOKEN_REUSE_MS) return kept.token;
    const token = await this.cdnToken(repository);
    this.tokens.set(repository, { token, at: Date.now() });
    return token;
  }

  private sign(name: string, digest: string, expires: number): string {
    return createHmac("sha256", this.secret).update(`${name}\n${digest}\n${expires}`).digest("hex").slice(0, 32);
  }

  /** One exchange with the backend registry, body read whole (the test content is small). */
  private backend(method: string, path: string, headers: OutgoingHttpHeaders, body?: IncomingMessage): Promise<Relayed> {
    return new Promise((resolve, reject) => {
      const upstream = httpsRequest({ host: "127.0.0.1", port: this.backendPort, method, path, headers, ca: readFileSync(this.pki.caCert), servername: "localhost" }, (answer) => {
        const chunks: Buffer[] = [];
        answer.on("data", (c: Buffer) => chunks.push(c));
        const done = (cut: boolean) => () => resolve({ status: answer.statusCode ?? 502, headers: answer.headers, body: Buffer.concat(chunks), cut });
        answer.on("end", done(false));
        answer.on("aborted", done(true));
        answer.on("error", done(true));
      });
      upstream.on("error", reject);
      if (body) body.pipe(upstream);
      else upstream.end();
    });
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve) ?? resolve(undefined));
  }
}

/** The client's request headers as the backend gets them: the Host stays (distribution builds Location and Link from it). */
function forwardedHeaders(req: IncomingMessage): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(req.headers)) if (value !== undefined && name !== "connection" && name !== "keep-alive") headers[name] = value;
  return headers;
}

function relay(res: ServerResponse, answer: Relayed, method: string | undefined): void {
  const headers: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(answer.headers)) if (value !== undefined && !HOP_BY_HOP.has(name)) headers[name] = value;
  res.writeHead(answer.status, headers);
  if (!answer.cut) res.end(method === "HEAD" ? undefined : answer.body);
  else res.write(answer.body, () => res.destroy());
}

function declaresNoMediaType(body: Buffer): boolean {
  try {
    const doc = JSON.parse(body.toString()) as { schemaVersion?: unknown; mediaType?: unknown; config?: unknown };
    return doc.schemaVersion === 2 && doc.mediaType === undefined && typeof doc.config === "object";
  } catch {
    return false;
  }
}
