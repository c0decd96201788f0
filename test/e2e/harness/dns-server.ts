import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { stopProcess, waitFor } from "./ports.js";

/**
 * A real DNS server (dnsmasq) on a loopback address of its own, port 53, answering for one zone
 * from a hosts file, as the cluster DNS answers for a headless Service: one A record per ready
 * replica. Names in the zone it does not hold are NXDOMAIN; it forwards nothing.
 */
export class TestDnsServer {
  private child: ChildProcess | undefined;
  private output = "";
  /** How many times dnsmasq has read the hosts file (its log says so, at start and on SIGHUP). */
  private reads = 0;
  readonly hostsFile: string;
  /** A resolv.conf naming only this server, for a process started with `withResolvConf`. */
  readonly resolvConf: string;

  constructor(
    dir: string,
    readonly address = "127.53.0.1",
    /** Names under this domain are answered from the hosts file only. */
    readonly zone = "test",
  ) {
    this.hostsFile = path.join(dir, `dns-${address}.hosts`);
    this.resolvConf = path.join(dir, `dns-${address}.resolv.conf`);
    // Short timeouts: a test that stops the server waits for the resolver's failure, not 5 s × 2.
    writeFileSync(this.resolvConf, `nameserver ${address}\noptions timeout:1 attempts:1\n`);
    writeFileSync(this.hostsFile, "");
  }

  async start(): Promise<void> {
    this.output = "";
    this.reads = 0;
    const args = [
      "--keep-in-foreground",
      "--conf-file=/dev/null",
      // As root, so that it can read the hosts file in the test's private directory after a SIGHUP.
      "--user=root",
      "--pid-file=",
      "--port=53",
      `--listen-address=${this.address}`,
      "--bind-interfaces",
      "--no-resolv",
      "--no-hosts",
      `--addn-hosts=${this.hostsFile}`,
      `--local=/${this.zone}/`,
      "--log-facility=-",
    ];
    const child = spawn("dnsmasq", args, { stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    const collect = (chunk: Buffer): void => {
      this.output += chunk.toString();
      this.reads = this.output.split(`read ${this.hostsFile} - `).length - 1;
    };
    child.stdout!.on("data", collect);
    child.stderr!.on("data", collect);
    const exited = new Promise<never>((_, reject) => child.once("exit", (code) => reject(new Error(`dnsmasq exited with ${code}: ${this.output}`))));
    exited.catch(() => undefined);
    await Promise.race([exited, waitFor(() => this.reads > 0, 10_000, "dnsmasq to read its hosts file")]);
  }

  /**
   * Makes `name` answer with these addresses (none: the name is gone, NXDOMAIN), and waits until
   * dnsmasq has re-read the file: addn-hosts files are read again on SIGHUP, which also clears its cache.
   */
  async setRecords(name: string, addresses: string[]): Promise<void> {
    writeFileSync(this.hostsFile, addresses.map((a) => `${a} ${name}\n`).join(""));
    if (!this.child) return;
    const before = this.reads;
    this.child.kill("SIGHUP");
    await waitFor(() => this.reads > before, 10_000, "dnsmasq to re-read its hosts file");
  }

  async stop(): Promise<void> {
    await stopProcess(this.child, "SIGTERM");
    this.child = undefined;
  }
}

/**
 * A command prefix that runs a process in a mount namespace of its own, where `resolvConf` is
 * bind-mounted over /etc/resolv.conf: the system resolver (getaddrinfo) asks the test's DNS server,
 * and the machine's own resolv.conf is left alone. Needs root.
 */
export function withResolvConf(resolvConf: string): string[] {
  return withFileOver(resolvConf, "/etc/resolv.conf");
}

/**
 * A command prefix, as withResolvConf: the process sees `hostsFile` as /etc/hosts, so the test
 * world's names (a registry on loopback under its own name) resolve for clients that cannot be
 * told where to connect, as containerd's own fallback to the registry cannot. Needs root.
 */
export function withHostsFile(hostsFile: string): string[] {
  return withFileOver(hostsFile, "/etc/hosts");
}

function withFileOver(file: string, target: string): string[] {
  return ["unshare", "--mount", "sh", "-c", `mount --bind "$0" ${target} && exec "$@"`, file];
}
