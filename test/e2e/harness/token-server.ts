import { randomBytes, sign } from "node:crypto";
import { readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import type { TestPki } from "./test-ca.js";

export const TOKEN_SERVICE = "regcache-test-registry";
export const TOKEN_ISSUER = "regcache-test-token-issuer";

export interface TokenRequest {
  /** "GET" (token spec: Basic credentials, scope in the query) or "POST" (OAuth2 form, distribution's oauth.md). */
  method: string;
  /** How the caller identified itself: a Basic header, an OAuth2 grant (its grant_type), or not at all. */
  credentials: "none" | "basic" | "password" | "refresh_token" | "other";
  /** The authenticated user; undefined when anonymous or refused. */
  account: string | undefined;
  /** The OAuth2 form's client_id (POST only). */
  clientId?: string;
  scope: string;
  granted: string[];
  /** The status answered: 200 with a token, otherwise a refusal. */
  status: number;
}

export interface TokenServerOptions {
  /**
   * Credentials are accepted only by the OAuth2 password grant (POST): a GET with a Basic
   * header is refused with 401, as a token server without the legacy flow would. Anonymous
   * GETs still get (anonymous) tokens. Mutable: pushes (skopeo, GET with Basic) can be made first.
   */
  requirePostForCredentials?: boolean;
  /** Repositories under these prefixes anyone may pull (default: "public/"). */
  anonymousPull?: string[];
}

const MAX_FORM_BYTES = 64 * 1024;

/**
 * A registry token server (distribution's token auth spec) for the test registry: JWTs signed
 * RS256 with the test CA's key, the CA certificate in `x5c`, which the registry trusts as its
 * `rootcertbundle`. Anonymous callers may pull repositories under "public/" (or the prefixes
 * given, as Docker Hub lets anyone pull "library/"); the users given
 * may pull and push everything. Tokens are fetched with GET (token.md: Basic credentials,
 * answer `token`) or with the OAuth2 POST (oauth.md: form with grant_type=password, answer
 * `access_token`), as containerd does when it has credentials. Every request is recorded,
 * refused ones too.
 */
export class TokenServer {
  readonly requests: TokenRequest[] = [];
  requirePostForCredentials: boolean;
  private readonly anonymousPull: string[];
  private server: Server | undefined;
  port = 0;

  constructor(
    private readonly pki: TestPki,
    private readonly users: Record<string, string>,
    options: TokenServerOptions = {},
  ) {
    this.requirePostForCredentials = options.requirePostForCredentials ?? false;
    this.anonymousPull = options.anonymousPull ?? ["public/"];
  }

  get realm(): string {
    return `https://127.0.0.1:${this.port}/token`;
  }

  /** Listens on `port` (0: any), which the registry's config may have had to name in advance. */
  async start(port = 0): Promise<void> {
    const signingKey = readFileSync(this.pki.caKey);
    const x5c = readFileSync(this.pki.caCert, "utf8").replace(/-----[^-]+-----|\s/g, "");
    const issue = (account: string | undefined, scopes: string[]) => {
      const access = scopes.flatMap((scope) => {
        const [type, name, actions] = scope.split(":");
        if (type !== "repository" || !name || !actions) return [];
        const allowed = actions.split(",").filter((a) => account !== undefined || (a === "pull" && this.anonymousPull.some((prefix) => name.startsWith(prefix))));
        return allowed.length > 0 ? [{ type, name, actions: allowed }] : [];
      });
      const now = Math.floor(Date.now() / 1000);
      const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
      const header = encode({ typ: "JWT", alg: "RS256", x5c: [x5c] });
      const claims = encode({ iss: TOKEN_ISSUER, sub: account ?? "", aud: TOKEN_SERVICE, exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString("hex"), access });
      const signature = sign("sha256", Buffer.from(`${header}.${claims}`), signingKey).toString("base64url");
      return { token: `${header}.${claims}.${signature}`, granted: access.map((a) => `${a.name}:${a.actions.join(",")}`), issuedAt: new Date(now * 1000).toISOString() };
    };
    this.server = createServer({ key: readFileSync(this.pki.serverKey), cert: readFileSync(this.pki.serverCert) }, (req, res) => {
      if (req.method === "POST") {
        this.handlePost(req, res, issue);
        return;
      }
      const url = new URL(req.url ?? "/", "https://token.test");
      const scopes = url.searchParams.getAll("scope");
      const record = (status: number, account: string | undefined, granted: string[] = []) =>
        this.requests.push({ method: req.method ?? "", credentials: req.headers.authorization ? "basic" : "none", account, scope: scopes.join(" "), granted, status });
      if (req.method !== "GET" && req.method !== "HEAD") {
        record(405, undefined);
        res.writeHead(405, { allow: "GET, POST", "content-type": "application/json" }).end('{"details":"method not allowed"}');
        return;
      }
      if (req.headers.authorization && this.requirePostForCredentials) {
        record(401, undefined);
        res.writeHead(401, { "content-type": "application/json" }).end('{"details":"credentials are accepted only by the OAuth2 POST (grant_type=password)"}');
        return;
      }
      const account = this.authenticate(req.headers.authorization);
      if (account === null) {
        record(401, undefined);
        res.writeHead(401, { "content-type": "application/json" }).end('{"details":"bad credentials"}');
        return;
      }
      const { token, granted } = issue(account, scopes);
      record(200, account, granted);
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token, expires_in: 300 }));
    });
    await new Promise<void>((resolve) => this.server!.listen(port, "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  /**
   * distribution's oauth.md: an application/x-www-form-urlencoded body with grant_type,
   * client_id (required), service, scope (space-separated) and, for grant_type=password,
   * username and password. Answers {access_token, scope, expires_in, issued_at}; errors as
   * RFC 6749 section 5.2 ({"error": ...}, 400). Only the password grant is supported.
   */
  private handlePost(req: IncomingMessage, res: ServerResponse, issue: (account: string | undefined, scopes: string[]) => { token: string; granted: string[]; issuedAt: string }): void {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_FORM_BYTES) chunks.push(chunk);
    });
    req.on("end", () => {
      const contentType = String(req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
      const form = new URLSearchParams(contentType === "application/x-www-form-urlencoded" && size <= MAX_FORM_BYTES ? Buffer.concat(chunks).toString() : "");
      const grantType = form.get("grant_type") ?? "";
      const scopes = form.getAll("scope").flatMap((s) => s.split(" ")).filter(Boolean);
      const clientId = form.get("client_id") ?? undefined;
      const credentials: TokenRequest["credentials"] = grantType === "password" || grantType === "refresh_token" ? grantType : grantType ? "other" : "none";
      const refuse = (status: number, error: string, description: string) => {
        this.requests.push({ method: "POST", credentials, account: undefined, clientId, scope: scopes.join(" "), granted: [], status });
        res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify({ error, error_description: description }));
      };
      if (contentType !== "application/x-www-form-urlencoded") return refuse(400, "invalid_request", "expected an application/x-www-form-urlencoded body");
      if (!clientId) return refuse(400, "invalid_request", "client_id is required");
      if (grantType !== "password") return refuse(400, "unsupported_grant_type", `grant_type ${grantType || "(none)"} is not supported`);
      const username = form.get("username") ?? "";
      if (!username || this.users[username] !== (form.get("password") ?? "")) return refuse(400, "invalid_grant", "bad credentials");
      const { token, granted, issuedAt } = issue(username, scopes);
      this.requests.push({ method: "POST", credentials, account: username, clientId, scope: scopes.join(" "), granted, status: 200 });
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ access_token: token, scope: scopes.join(" "), expires_in: 300, issued_at: issuedAt }));
    });
  }

  /** The user a Basic header names when its password is right; undefined when anonymous; null when wrong. */
  private authenticate(header: string | undefined): string | undefined | null {
    if (!header) return undefined;
    const match = /^Basic\s+(\S+)$/i.exec(header);
    if (!match) return null;
    const [user, ...rest] = Buffer.from(match[1]!, "base64").toString().split(":");
    return user && this.users[user] === rest.join(":") ? user : null;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve) ?? resolve(undefined));
  }
}
