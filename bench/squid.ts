import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { freePort, stopProcess, waitForListening } from "../test/e2e/harness/ports.js";

const SQUID = "/usr/sbin/squid";
const CERTGEN = "/usr/lib/squid/security_file_certgen";

export interface SquidOptions {
  /** Host names squid resolves to 127.0.0.1 (it has no DNS here). */
  hosts: string[];
  /** The CA that signed the upstream's certificate: squid verifies upstream TLS with it. */
  upstreamCaFile: string;
}

/**
 * squid (Debian's squid-openssl) as an ssl-bump caching proxy, the peer a user would
 * otherwise put in front of a registry: it terminates TLS with certificates from its own CA,
 * verifies the upstream, and caches blob responses on disk (ufs). One worker, the default.
 */
export class SquidSslBump {
  readonly caFile: string;
  port = 0;
  private child: ChildProcess | undefined;
  /** Its own directory, not under a private test dir: squid's user must be able to reach it. */
  private readonly dir = mkdtempSync(path.join(tmpdir(), "regcache-bench-squid-"));

  constructor(private readonly options: SquidOptions) {
    this.caFile = path.join(this.dir, "bump-ca.crt");
  }

  get proxyUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const { hosts, upstreamCaFile } = this.options;
    const dir = this.dir;
    this.port = await freePort();
    const bumpKey = path.join(dir, "bump-ca.key");
    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", bumpKey, "-out", this.caFile, "-days", "30", "-subj", "/CN=squid bench bump CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"], { stdio: "pipe" });
    copyFileSync(upstreamCaFile, path.join(dir, "upstream-ca.crt"));
    writeFileSync(path.join(dir, "hosts"), hosts.map((h) => `127.0.0.1 ${h}\n`).join(""));
    const sslDb = path.join(dir, "ssl_db");
    execFileSync(CERTGEN, ["-c", "-s", sslDb, "-M", "16MB"], { stdio: "pipe" });
    const config = [
      `http_port 127.0.0.1:${this.port} ssl-bump generate-host-certificates=on dynamic_cert_mem_cache_size=16MB tls-cert=${this.caFile} tls-key=${bumpKey}`,
      `sslcrtd_program ${CERTGEN} -s ${sslDb} -M 16MB`,
      "sslcrtd_children 5",
      "acl step1 at_step SslBump1",
      "ssl_bump peek step1",
      "ssl_bump bump all",
      `tls_outgoing_options cafile=${path.join(dir, "upstream-ca.crt")}`,
      `hosts_file ${path.join(dir, "hosts")}`,
      "http_access allow localhost",
      "http_access deny all",
      `cache_dir ufs ${path.join(dir, "cache")} 4096 16 256`,
      "maximum_object_size 1 GB",
      // Blobs are addressed by digest and never change: cache them for a year whatever the client asks.
      "refresh_pattern -i /v2/.+/blobs/sha256: 525600 100% 525600 override-expire ignore-reload ignore-no-store ignore-private",
      "refresh_pattern . 0 20% 4320",
      `pid_filename ${path.join(dir, "squid.pid")}`,
      `access_log stdio:${path.join(dir, "access.log")} squid`,
      `cache_log ${path.join(dir, "cache.log")}`,
      "cache_store_log none",
      `coredump_dir ${dir}`,
      "shutdown_lifetime 1 seconds",
      "",
    ].join("\n");
    const configFile = path.join(dir, "squid.conf");
    writeFileSync(configFile, config);
    // Run as root, squid drops to its own user, which must own what it writes.
    if (process.getuid?.() === 0) execFileSync("chown", ["-R", "proxy:proxy", dir]);
    execFileSync(SQUID, ["-N", "-z", "-f", configFile], { stdio: "pipe" });
    this.child = spawn(SQUID, ["-N", "-f", configFile], { stdio: "ignore" });
    await waitForListening(this.port, 30_000, "squid");
  }

  /** Squid's result codes (TCP_MISS, TCP_HIT, ...) for requests whose URL contains `fragment`. */
  resultCodes(fragment: string): string[] {
    const log = readFileSync(path.join(this.dir, "access.log"), "utf8");
    return log
      .split("\n")
      .filter((line) => line.includes(fragment))
      .map((line) => line.split(/\s+/)[3]?.split("/")[0] ?? "");
  }

  async stop(): Promise<void> {
    await stopProcess(this.child, "SIGKILL");
    this.child = undefined;
    rmSync(this.dir, { recursive: true, force: true });
  }
}
