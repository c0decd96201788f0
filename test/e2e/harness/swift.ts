import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { userInfo } from "node:os";
import path from "node:path";
import { CreateBucketCommand, S3Client, type S3ClientConfig } from "@aws-sdk/client-s3";
import { freePort, waitFor } from "./ports.js";

/** tempauth's user "test:tester" (see the proxy's [filter:tempauth]); s3api takes it as access key and secret. */
export const SWIFT_CREDENTIALS = { accessKeyId: "test:tester", secretAccessKey: "testing" };
export const SWIFT_REGION = "us-east-1";

/** Debian's interpreter by path: another python3 earlier on PATH (pyenv, a venv) cannot import swift. */
const PYTHON = "/usr/bin/python3";
/** What TestSwift runs: the four Swift servers, their Python, and memcached (s3api's token cache). */
export const SWIFT_TOOLS = [
  PYTHON,
  "/usr/bin/swift-proxy-server",
  "/usr/bin/swift-account-server",
  "/usr/bin/swift-container-server",
  "/usr/bin/swift-object-server",
  "memcached",
] as const;

type Server = "account" | "container" | "object" | "proxy";
const SERVERS: Server[] = ["account", "container", "object", "proxy"];

/** One process group per service, so kill/pause reach everything it forked. */
type Service = Server | "memcached";

/** Ports of the services, and where syslog datagrams go (nothing listens there). */
type Ports = Record<Service | "syslog", number>;

/**
 * A single-node OpenStack Swift (Debian's packages) with the s3api middleware: a real
 * S3-compatible store on loopback for the fleet's shared blob tier. Everything lives under `dir`:
 * configuration, rings, one device, logs. kill/restart and pause/resume take the store down or
 * stall it under a client, as an outage or a hung store would.
 */
export class TestSwift {
  private readonly children = new Map<Service, ChildProcess>();
  private ports: Ports | undefined;

  constructor(
    private readonly dir: string,
    readonly bucket = "regcache",
  ) {}

  /** What a regcache process needs in its environment to reach the store through the SDK's default chain. */
  get credentialsEnv(): Record<string, string> {
    return { AWS_ACCESS_KEY_ID: SWIFT_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: SWIFT_CREDENTIALS.secretAccessKey, AWS_REGION: SWIFT_REGION };
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port("proxy")}`;
  }

  /** The S3 client options that work with s3api: path-style, and no default CRC32/aws-chunked uploads (refused). */
  clientConfig(): S3ClientConfig {
    return {
      endpoint: this.endpoint,
      region: SWIFT_REGION,
      forcePathStyle: true,
      credentials: SWIFT_CREDENTIALS,
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
    };
  }

  async start(): Promise<void> {
    this.ports = {
      account: await freePort(),
      container: await freePort(),
      object: await freePort(),
      proxy: await freePort(),
      memcached: await freePort(),
      syslog: await freePort(),
    };
    this.writeConfig();
    await this.restart();
    const client = new S3Client(this.clientConfig());
    try {
      await client.send(new CreateBucketCommand({ Bucket: this.bucket }));
    } finally {
      client.destroy();
    }
  }

  /** Starts every service on the ports and data of start(); the store comes back with its objects. */
  async restart(): Promise<void> {
    const memcachedUser = userInfo().uid === 0 ? ["-u", "nobody"] : [];
    this.launch("memcached", "memcached", ["-l", "127.0.0.1", "-p", String(this.port("memcached")), "-U", "0", "-m", "64", ...memcachedUser]);
    for (const server of SERVERS) {
      this.launch(server, PYTHON, ["-I", `/usr/bin/swift-${server}-server`, this.file("etc", `${server}-server.conf`), "-v"]);
    }
    await waitFor(
      async () => {
        for (const [service, child] of this.children) {
          if (child.exitCode !== null || child.signalCode !== null) throw new Error(`swift ${service} exited:\n${this.logTail(service)}`);
        }
        const answers = await Promise.all(SERVERS.map((s) => fetch(`http://127.0.0.1:${this.port(s)}/healthcheck`).then((r) => r.ok, () => false)));
        return answers.every(Boolean);
      },
      30_000,
      `swift to be healthy (logs in ${this.file("log")})`,
    ).catch((err: unknown) => {
      // waitFor swallows errors from the check: say which server died, not only that time ran out.
      const dead = [...this.children].find(([, c]) => c.exitCode !== null || c.signalCode !== null);
      throw dead ? new Error(`swift ${dead[0]} exited:\n${this.logTail(dead[0])}`) : err;
    });
  }

  /** SIGKILLs every service, as a crash of the store host would. */
  async kill(): Promise<void> {
    await Promise.all([...this.children.keys()].map((service) => this.signalAndWait(service)));
  }

  /** SIGSTOPs the S3 front: it keeps accepting connections (the kernel's backlog) but never answers. */
  pause(): void {
    this.signal("proxy", "SIGSTOP");
  }

  resume(): void {
    this.signal("proxy", "SIGCONT");
  }

  /** Ends the store for good (what afterAll calls); the directory stays for the caller to remove. */
  async stop(): Promise<void> {
    await this.kill();
  }

  private port(service: keyof Ports): number {
    if (!this.ports) throw new Error("TestSwift.start() has not run");
    return this.ports[service];
  }

  private file(...parts: string[]): string {
    return path.join(this.dir, ...parts);
  }

  private launch(service: Service, command: string, args: string[]): void {
    const log = openSync(this.file("log", `${service}.log`), "a");
    try {
      this.children.set(service, spawn(command, args, { detached: true, stdio: ["ignore", log, log] }));
    } finally {
      closeSync(log);
    }
  }

  private signal(service: Service, signal: NodeJS.Signals): void {
    const child = this.children.get(service);
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) process.kill(-child.pid, signal);
  }

  private async signalAndWait(service: Service): Promise<void> {
    const child = this.children.get(service);
    this.children.delete(service);
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    process.kill(-child.pid!, "SIGKILL");
    await exited;
  }

  private logTail(service: Service): string {
    return readFileSync(this.file("log", `${service}.log`), "utf8").split("\n").slice(-20).join("\n");
  }

  /** Configuration and rings as /etc/swift would hold them, for one device and one replica on loopback. */
  private writeConfig(): void {
    for (const sub of ["etc", "run", "log", "srv/d1"]) mkdirSync(this.file(sub), { recursive: true });
    writeFileSync(
      this.file("etc", "swift.conf"),
      ["[swift-hash]", "swift_hash_path_suffix = regcache-test", "[storage-policy:0]", "name = Policy-0", "default = yes", ""].join("\n"),
    );
    // workers = 0: one process per server (no forked workers), so a signal to it is a signal to all of it.
    const common = (server: Server): string[] => [
      "[DEFAULT]",
      "bind_ip = 127.0.0.1",
      `bind_port = ${this.port(server)}`,
      "workers = 0",
      `user = ${userInfo().username}`,
      `swift_dir = ${this.file("etc")}`,
      `devices = ${this.file("srv")}`,
      "mount_check = false",
      // Syslog over UDP, to a port nobody reads: containers often have no /dev/log.
      "log_udp_host = 127.0.0.1",
      `log_udp_port = ${this.port("syslog")}`,
    ];
    for (const server of ["account", "container", "object"] as const) {
      writeFileSync(
        this.file("etc", `${server}-server.conf`),
        [
          ...common(server),
          "[pipeline:main]",
          `pipeline = healthcheck ${server}-server`,
          `[app:${server}-server]`,
          `use = egg:swift#${server}`,
          "[filter:healthcheck]",
          "use = egg:swift#healthcheck",
          "",
        ].join("\n"),
      );
    }
    writeFileSync(
      this.file("etc", "proxy-server.conf"),
      [
        ...common("proxy"),
        "[pipeline:main]",
        "pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo proxy-logging proxy-server",
        "[app:proxy-server]",
        "use = egg:swift#proxy",
        "account_autocreate = true",
        "allow_account_management = true",
        "[filter:tempauth]",
        "use = egg:swift#tempauth",
        `user_test_tester = ${SWIFT_CREDENTIALS.secretAccessKey} .admin`,
        "[filter:s3api]",
        "use = egg:swift#s3api",
        `location = ${SWIFT_REGION}`,
        "dns_compliant_bucket_names = false",
        "[filter:cache]",
        "use = egg:swift#memcache",
        `memcache_servers = 127.0.0.1:${this.port("memcached")}`,
        ...["catch_errors", "gatekeeper", "healthcheck", "proxy_logging", "listing_formats", "copy", "slo", "dlo"].flatMap((egg) => [
          `[filter:${egg === "proxy_logging" ? "proxy-logging" : egg}]`,
          `use = egg:swift#${egg}`,
        ]),
        "",
      ].join("\n"),
    );
    // One Python process builds the three rings: nine swift-ring-builder runs take seconds.
    execFileSync(
      PYTHON,
      [
        "-I",
        "-c",
        [
          "import sys",
          "from swift.common.ring import RingBuilder",
          "etc = sys.argv[1]",
          "for name, port in zip(('account', 'container', 'object'), map(int, sys.argv[2:5])):",
          "    b = RingBuilder(10, 1, 1)",
          "    b.add_dev({'region': 1, 'zone': 1, 'ip': '127.0.0.1', 'port': port, 'device': 'd1', 'weight': 100, 'meta': ''})",
          "    b.rebalance()",
          "    b.get_ring().save('%s/%s.ring.gz' % (etc, name))",
        ].join("\n"),
        this.file("etc"),
        String(this.port("account")),
        String(this.port("container")),
        String(this.port("object")),
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
  }
}

/**
 * Puts the test store's credentials where the SDK's default chain finds them first (the store
 * takes credentials only from that chain, as in production); returns what puts the old ones back.
 */
export function swiftCredentialsInEnv(): () => void {
  // A developer's session token or profile would otherwise ride along with the test's keys.
  const names = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"] as const;
  const saved = Object.fromEntries(names.map((name) => [name, process.env[name]]));
  for (const name of names) delete process.env[name];
  process.env.AWS_ACCESS_KEY_ID = SWIFT_CREDENTIALS.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = SWIFT_CREDENTIALS.secretAccessKey;
  return () => {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  };
}
