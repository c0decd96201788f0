import { spawn, type ChildProcess, execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { freePort, stopProcess, waitForListening } from "./ports.js";
import type { TestPki } from "./test-ca.js";
import { TOKEN_ISSUER, TOKEN_SERVICE } from "./token-server.js";

export interface RegistryOptions {
  dir: string;
  pki: TestPki;
  /** Basic auth from an htpasswd file with bcrypt entries (see writeHtpasswd). */
  htpasswdFile?: string;
  /** Token auth: clients get Bearer tokens from this realm (see TokenServer), signed by the test CA. */
  tokenRealm?: string;
  /** Turns it into distribution's pull-through cache of this URL, trusting `pki`'s CA for it. */
  proxyRemoteUrl?: string;
  port?: number;
}

export interface AccessLogEntry {
  method: string;
  path: string;
  status: number;
}

/**
 * Debian's docker-registry (distribution 2.8, the reference implementation) on
 * 127.0.0.1 with TLS from the test CA. Its access log is parsed to count the
 * upstream requests regcache makes.
 */
export class TestRegistry {
  private child: ChildProcess | undefined;
  readonly accessLog: AccessLogEntry[] = [];
  port = 0;
  private output = "";

  constructor(private readonly options: RegistryOptions) {}

  get url(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Starts the registry; a no-op while it runs (restarts reuse the same port). */
  async start(): Promise<void> {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) return;
    const { dir, pki } = this.options;
    if (this.port === 0) this.port = this.options.port ?? (await freePort());
    mkdirSync(path.join(dir, "storage"), { recursive: true });
    const config = [
      "version: 0.1",
      "log:",
      "  level: warn",
      "  accesslog:",
      "    disabled: false",
      "storage:",
      "  filesystem:",
      `    rootdirectory: ${path.join(dir, "storage")}`,
      "  delete:",
      "    enabled: true",
      "http:",
      `  addr: 127.0.0.1:${this.port}`,
      "  tls:",
      `    certificate: ${pki.serverCert}`,
      `    key: ${pki.serverKey}`,
      ...(this.options.htpasswdFile ? ["auth:", "  htpasswd:", "    realm: regcache-test", `    path: ${this.options.htpasswdFile}`] : []),
      ...(this.options.tokenRealm
        ? ["auth:", "  token:", `    realm: ${this.options.tokenRealm}`, `    service: ${TOKEN_SERVICE}`, `    issuer: ${TOKEN_ISSUER}`, `    rootcertbundle: ${pki.caCert}`]
        : []),
      ...(this.options.proxyRemoteUrl ? ["proxy:", `  remoteurl: ${this.options.proxyRemoteUrl}`] : []),
      "",
    ].join("\n");
    const configFile = path.join(dir, "config.yml");
    writeFileSync(configFile, config);
    // Go reads extra trust from SSL_CERT_FILE: a pull-through cache must verify its remote like regcache does.
    const env = this.options.proxyRemoteUrl ? { ...process.env, SSL_CERT_FILE: pki.caCert } : process.env;
    const child = spawn("docker-registry", ["serve", configFile], { stdio: ["ignore", "pipe", "pipe"], env });
    this.child = child;
    const onData = (chunk: Buffer) => {
      this.output += chunk.toString();
      let newline: number;
      while ((newline = this.output.indexOf("\n")) >= 0) {
        const line = this.output.slice(0, newline);
        this.output = this.output.slice(newline + 1);
        const match = /"(GET|HEAD|PUT|POST|PATCH|DELETE) (\S+) HTTP\/[\d.]+" (\d{3})/.exec(line);
        if (match) this.accessLog.push({ method: match[1]!, path: match[2]!, status: Number(match[3]) });
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    await waitForListening(this.port, 15_000, "docker-registry");
  }

  /** Requests for blobs (GET only, or all methods) whose path contains `digest`. */
  blobGets(digest?: string): AccessLogEntry[] {
    return this.accessLog.filter((e) => e.method === "GET" && e.path.includes("/blobs/") && (!digest || e.path.includes(digest)));
  }

  clearLog(): void {
    this.accessLog.length = 0;
  }

  async stop(): Promise<void> {
    await stopProcess(this.child, "SIGKILL");
    this.child = undefined;
  }
}

/** An htpasswd file with bcrypt entries (distribution accepts only bcrypt), made by apache2-utils' htpasswd. */
export function writeHtpasswd(file: string, users: Record<string, string>): void {
  const lines = Object.entries(users).map(([user, password]) => execFileSync("htpasswd", ["-nbB", user, password]).toString().trim());
  writeFileSync(file, `${lines.join("\n")}\n`);
}
