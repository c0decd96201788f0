import { randomBytes, sign } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import type { TestPki } from "./test-ca.js";

export const TOKEN_SERVICE = "regcache-test-registry";
export const TOKEN_ISSUER = "regcache-test-token-issuer";

export interface TokenRequest {
  account: string | undefined;
  scope: string;
  granted: string[];
}

/**
 * A registry token server (distribution's token auth spec) for the test registry: JWTs signed
 * RS256 with the test CA's key, the CA certificate in `x5c`, which the registry trusts as its
 * `rootcertbundle`. Anonymous callers may pull repositories under "public/"; the users given
 * may pull and push everything. Every request is recorded.
 */
export class TokenServer {
  readonly requests: TokenRequest[] = [];
  private server: Server | undefined;
  port = 0;

  constructor(
    private readonly pki: TestPki,
    private readonly users: Record<string, string>,
  ) {}

  get realm(): string {
    return `https://127.0.0.1:${this.port}/token`;
  }

  /** Listens on `port` (0: any), which the registry's config may have had to name in advance. */
  async start(port = 0): Promise<void> {
    const signingKey = readFileSync(this.pki.caKey);
    const x5c = readFileSync(this.pki.caCert, "utf8").replace(/-----[^-]+-----|\s/g, "");
    this.server = createServer({ key: readFileSync(this.pki.serverKey), cert: readFileSync(this.pki.serverCert) }, (req, res) => {
      const url = new URL(req.url ?? "/", "https://token.test");
      const account = this.authenticate(req.headers.authorization);
      if (account === null) {
        res.writeHead(401, { "content-type": "application/json" }).end('{"details":"bad credentials"}');
        return;
      }
      const scopes = url.searchParams.getAll("scope");
      const access = scopes.flatMap((scope) => {
        const [type, name, actions] = scope.split(":");
        if (type !== "repository" || !name || !actions) return [];
        const allowed = actions.split(",").filter((a) => account !== undefined || (a === "pull" && name.startsWith("public/")));
        return allowed.length > 0 ? [{ type, name, actions: allowed }] : [];
      });
      this.requests.push({ account, scope: scopes.join(" "), granted: access.map((a) => `${a.name}:${a.actions.join(",")}`) });
      const now = Math.floor(Date.now() / 1000);
      const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
      const header = encode({ typ: "JWT", alg: "RS256", x5c: [x5c] });
      const claims = encode({ iss: TOKEN_ISSUER, sub: account ?? "", aud: TOKEN_SERVICE, exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString("hex"), access });
      const signature = sign("sha256", Buffer.from(`${header}.${claims}`), signingKey).toString("base64url");
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token: `${header}.${claims}.${signature}`, expires_in: 300 }));
    });
    await new Promise<void>((resolve) => this.server!.listen(port, "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
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
