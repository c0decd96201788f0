import { Command } from "commander";
import { describe, expect, it } from "vitest";
import { serveOptions, toConfig, type RawServeOptions } from "../../../src/cli/serve-options.js";
import { hostMatches, OptionError, parseDuration, parseHostPattern, parseHostPort, parseHttpUrl, parseResolve, parseSize } from "../../../src/config/parse.js";

function parse(args: string[], env: Record<string, string> = {}) {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    const command = new Command("serve").exitOverride();
    for (const option of serveOptions()) command.addOption(option);
    command.parse(args, { from: "user" });
    return toConfig(command.opts<RawServeOptions>());
  } finally {
    for (const key of Object.keys(env)) delete process.env[key];
    Object.assign(process.env, saved);
  }
}

describe("serve options", () => {
  it("has defaults that work for a single node", () => {
    const config = parse([]);
    expect(config.listen).toEqual({ host: "0.0.0.0", port: 3128 });
    expect(config.dataDir).toBe("./data");
    expect(config.certsDir).toBe("./certs");
    expect(config.allowPorts).toEqual([443]);
    expect(config.maxCacheSize).toBe(20 * 2 ** 30);
    expect(config.tagTtl).toBe(0);
    expect(config.connectTimeout).toBe(5000);
  });

  it("reads repeatable flags", () => {
    const config = parse(["--resolve", "quay.test:443=127.0.0.1:5000", "--resolve", "ghcr.test:443=[::1]:5001", "--allow-port", "443", "--allow-port", "5000", "--no-intercept", "*.internal.example"]);
    expect(config.resolve).toEqual([
      { from: { host: "quay.test", port: 443 }, to: { host: "127.0.0.1", port: 5000 } },
      { from: { host: "ghcr.test", port: 443 }, to: { host: "::1", port: 5001 } },
    ]);
    expect(config.allowPorts).toEqual([443, 5000]);
    expect(config.noIntercept).toEqual(["*.internal.example"]);
  });

  it("reads REGCACHE_* variables, lists comma-separated", () => {
    const config = parse([], { REGCACHE_LISTEN: "127.0.0.1:8080", REGCACHE_UPSTREAM_CA: "/a.pem,/b.pem", REGCACHE_MAX_CACHE_SIZE: "50GiB", REGCACHE_TAG_TTL: "5m" });
    expect(config.listen).toEqual({ host: "127.0.0.1", port: 8080 });
    expect(config.upstreamCaFiles).toEqual(["/a.pem", "/b.pem"]);
    expect(config.maxCacheSize).toBe(50 * 2 ** 30);
    expect(config.tagTtl).toBe(300_000);
  });

  it("flags win over variables", () => {
    expect(parse(["--listen", "127.0.0.1:9"], { REGCACHE_LISTEN: "127.0.0.1:8080" }).listen.port).toBe(9);
  });

  it("rejects bad values with a message naming the option", () => {
    expect(() => parse(["--listen", "nonsense"])).toThrow(/--listen must be HOST:PORT/);
    expect(() => parse(["--allow-port", "70000"])).toThrow(/--allow-port must be a number from 1 to 65535/);
    expect(() => parse(["--max-cache-size", "lots"])).toThrow(OptionError);
    expect(() => parse(["--connect-timeout", "0"])).toThrow(/--connect-timeout must be greater than 0/);
    expect(() => parse(["--resolve", "quay.test=127.0.0.1"])).toThrow(/--resolve source must be HOST:PORT/);
    expect(() => parse(["--no-intercept", "bad host!"])).toThrow(/--no-intercept/);
    expect(() => parse(["--failure-threshold", "0"])).toThrow(/--failure-threshold/);
  });

  it("refuses a size without a unit, in every size option and its variable, with a hint", () => {
    const sizeOptions = serveOptions().filter((o) => o.flags.endsWith("<size>"));
    expect(sizeOptions.map((o) => o.long)).toContain("--max-cache-size");
    for (const option of sizeOptions) {
      expect(() => parse([option.long!, "20"]), option.long).toThrow(`${option.long} needs a unit, e.g. 20GiB (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB, Ki, Mi, Gi, Ti)`);
      expect(() => parse([], { [option.envVar!]: "20" }), option.envVar).toThrow(`${option.long} needs a unit`);
      expect(() => parse([option.long!, "20MiB"]), option.long).not.toThrow();
    }
  });
});

describe("value parsers", () => {
  it("sizes", () => {
    expect(parseSize("1000B")).toBe(1000);
    expect(parseSize("1.5GB")).toBe(1.5e9);
    expect(parseSize("2MiB")).toBe(2 * 2 ** 20);
    expect(parseSize(" 3 kib ")).toBe(3 * 2 ** 10);
    expect(() => parseSize("-1GB")).toThrow(OptionError);
    expect(() => parseSize("5 parsecs", "--max-blob-size")).toThrow('--max-blob-size must be a number with a unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB, Ki, Mi, Gi, Ti), got "5 parsecs"');
  });

  it("sizes: each unit has one meaning, SI in 1000s, IEC and Kubernetes' Gi in 1024s; a bare G is refused with both spellings", () => {
    expect(parseSize("20GB")).toBe(20e9);
    expect(parseSize("20GiB")).toBe(20 * 2 ** 30);
    expect(parseSize("20Gi")).toBe(20 * 2 ** 30);
    expect(parseSize("512Mi")).toBe(512 * 2 ** 20);
    expect(parseSize("2Ti")).toBe(2 * 2 ** 40);
    expect(parseSize("64Ki")).toBe(64 * 2 ** 10);
    expect(() => parseSize("20G", "--max-cache-size")).toThrow('--max-cache-size "20G" is ambiguous: write 20GiB for 20 × 1024^3 bytes (Kubernetes\' 20Gi) or 20GB for 20 × 1000^3');
    for (const bare of ["10K", "10k", "512M", "2T", "1.5g"]) expect(() => parseSize(bare, "--max-blob-size"), bare).toThrow(/is ambiguous: write .*iB .* or .*B for/);
  });

  it("a size the Kubernetes way works in every size option, a bare G in none", () => {
    for (const option of serveOptions().filter((o) => o.flags.endsWith("<size>"))) {
      expect(() => parse([option.long!, "20Gi"]), option.long).not.toThrow();
      expect(() => parse([], { [option.envVar!]: "20G" }), option.envVar).toThrow(`${option.long} "20G" is ambiguous`);
    }
    expect(parse(["--max-cache-size", "40Gi"]).maxCacheSize).toBe(40 * 2 ** 30);
  });

  it("sizes need a unit: a bare number is more likely meant as gigabytes than bytes", () => {
    expect(() => parseSize("1000", "--max-cache-size")).toThrow(OptionError);
    expect(() => parseSize("1000", "--max-cache-size")).toThrow("--max-cache-size needs a unit, e.g. 1000GiB");
    expect(() => parseSize("0", "--max-blob-size")).toThrow("--max-blob-size needs a unit");
  });

  it("proxy URLs need a scheme", () => {
    expect(parseHttpUrl("http://127.0.0.1:3128", "--proxy")).toBe("http://127.0.0.1:3128");
    expect(parseHttpUrl("HTTPS://regcache.example", "--proxy")).toBe("HTTPS://regcache.example");
    for (const bad of ["127.0.0.1:3128", "localhost:3128", "ftp://x", "http://", "http:///path"]) {
      expect(() => parseHttpUrl(bad, "--proxy"), bad).toThrow(`--proxy must be a URL such as http://127.0.0.1:3128, got "${bad}"`);
    }
  });

  it("durations", () => {
    expect(parseDuration("0")).toBe(0);
    expect(parseDuration("250ms")).toBe(250);
    expect(parseDuration("5")).toBe(5000);
    expect(parseDuration("7d")).toBe(7 * 86_400_000);
    expect(() => parseDuration("soon")).toThrow(OptionError);
  });

  it("host:port and resolve rules", () => {
    expect(parseHostPort("[::1]:80", "x")).toEqual({ host: "::1", port: 80 });
    expect(parseHostPort("0.0.0.0:0", "x", true)).toEqual({ host: "0.0.0.0", port: 0 });
    expect(() => parseHostPort("0.0.0.0:0", "x")).toThrow(OptionError);
    expect(parseResolve("Quay.Test:443=127.0.0.1:1").from.host).toBe("quay.test");
  });

  it("host patterns", () => {
    expect(parseHostPattern("*.Example.com")).toBe("*.example.com");
    expect(hostMatches("a.example.com", ["*.example.com"])).toBe(true);
    expect(hostMatches("example.com", ["*.example.com"])).toBe(false);
    expect(hostMatches("badexample.com", ["*.example.com"])).toBe(false);
    expect(hostMatches("anything", ["*"])).toBe(true);
  });
});

describe("serve options for a fleet's shared tier", () => {
  it("without --blob-store or --index there is no shared tier, and the S3 options alone are an error", () => {
    expect(parse([]).shared).toBeUndefined();
    expect(() => parse(["--s3-endpoint", "http://127.0.0.1:9000"])).toThrow(/--s3-endpoint applies to --blob-store/);
    expect(() => parse(["--s3-force-path-style"])).toThrow(/--s3-force-path-style applies to --blob-store/);
  });

  it("reads the object store, the index and the shared secret from flags and REGCACHE_* variables", () => {
    const config = parse(["--blob-store", "s3://images/fleet-a", "--s3-endpoint", "http://127.0.0.1:9000", "--s3-force-path-style", "--blob-store-max-size", "2TiB", "--index", "redis://:pw@redis:6379/2", "--advertise", "10.0.0.5:3129", "--instance-secret-file", "/secret/key"]);
    expect(config.shared).toEqual({
      blobStore: { bucket: "images", prefix: "fleet-a", endpoint: "http://127.0.0.1:9000", forcePathStyle: true, region: undefined, maxBytes: 2 * 2 ** 40 },
      index: "redis://:pw@redis:6379/2",
    });
    expect(config.instanceSecretFile).toBe("/secret/key");
    // --index makes the replica reachable on the peer channel, even without a peer list: lease holders stream fills to the others.
    expect(config.cluster).toEqual({ peers: [], peersDns: undefined, advertise: "10.0.0.5:3129", listen: { host: "0.0.0.0", port: 3129 } });
    const fromEnv = parse([], { REGCACHE_BLOB_STORE: "s3://bucket", REGCACHE_S3_REGION: "eu-west-1", REGCACHE_INDEX: "redis://r:6379", REGCACHE_ADVERTISE: "10.0.0.6:3129" });
    expect(fromEnv.shared?.blobStore).toMatchObject({ bucket: "bucket", prefix: "", region: "eu-west-1", forcePathStyle: false });
    expect(fromEnv.shared?.index).toBe("redis://r:6379");
  });

  it("refuses an index that is not a redis URL, without echoing its password, and an index without --advertise", () => {
    expect(() => parse(["--index", "http://:hunter2@redis:6379", "--advertise", "10.0.0.5:3129"])).toThrow(/redis:\/\/ or rediss:\/\/ URL, got "http:\/\/:redacted@redis:6379\/"/);
    expect(() => parse(["--index", "http://:hunter2@redis:6379", "--advertise", "10.0.0.5:3129"])).not.toThrow(/hunter2/);
    expect(() => parse(["--index", "redis://redis:6379"])).toThrow(/--advertise HOST:PORT is required with --peer, --peers-dns or --index/);
    expect(() => parse(["--blob-store", "s3://b", "--blob-store-max-size", "0B"])).toThrow(/--blob-store-max-size must be greater than 0/);
  });
});

describe("serve options for the mirror endpoint", () => {
  it("is off by default; the default upstream is Docker Hub's API host", () => {
    expect(parse([]).mirror).toBeUndefined();
    expect(parse(["--mirror-listen", "0.0.0.0:5443", "--mirror-name", "regcache.internal"]).mirror).toEqual({
      listen: { host: "0.0.0.0", port: 5443 },
      names: ["regcache.internal"],
      plainHttp: false,
      defaultUpstream: { host: "registry-1.docker.io", port: 443 },
    });
  });

  it("reads names (DNS or IP, any case, IPv6 bracketed or not), plain HTTP and the default upstream from flags and REGCACHE_* variables", () => {
    const fromEnv = parse([], { REGCACHE_MIRROR_LISTEN: "127.0.0.1:5000", REGCACHE_MIRROR_NAME: "Regcache.Svc,10.96.0.50,[fd00::5]", REGCACHE_MIRROR_DEFAULT_UPSTREAM: "mirror.gcr.io" }).mirror;
    expect(fromEnv).toMatchObject({ names: ["regcache.svc", "10.96.0.50", "fd00::5"], defaultUpstream: { host: "mirror.gcr.io", port: 443 } });
    const plain = parse(["--mirror-listen", "0.0.0.0:5000", "--mirror-plain-http", "--mirror-default-upstream", "docker.io"]).mirror;
    expect(plain).toMatchObject({ plainHttp: true, names: [], defaultUpstream: { host: "registry-1.docker.io", port: 443 } });
    expect(parse(["--mirror-listen", "0.0.0.0:5000", "--mirror-plain-http"], { REGCACHE_MIRROR_DEFAULT_UPSTREAM: "registry.local:5001" }).mirror?.defaultUpstream).toEqual({ host: "registry.local", port: 5001 });
  });

  it("refuses what cannot work, naming the option", () => {
    expect(() => parse(["--mirror-listen", "0.0.0.0:5443"])).toThrow(/--mirror-listen needs --mirror-name .* or --mirror-plain-http/);
    expect(() => parse(["--mirror-name", "a.test"])).toThrow("--mirror-name applies to --mirror-listen, which is not set");
    expect(() => parse(["--mirror-plain-http"])).toThrow("--mirror-plain-http applies to --mirror-listen, which is not set");
    expect(() => parse(["--mirror-listen", "0.0.0.0:5000", "--mirror-plain-http", "--mirror-name", "a.test"])).toThrow(/with --mirror-plain-http there is none/);
    expect(() => parse(["--mirror-listen", "0.0.0.0:5000", "--mirror-name", "bad name!"])).toThrow('--mirror-name must be a DNS name or an IP address, got "bad name!"');
    expect(() => parse(["--mirror-listen", "0.0.0.0:5000", "--mirror-name", "*.wild.test"])).toThrow(/--mirror-name must be/);
    expect(() => parse(["--mirror-listen", "nonsense", "--mirror-name", "a.test"])).toThrow(/--mirror-listen must be HOST:PORT/);
    expect(() => parse(["--mirror-default-upstream", "https://quay.io"])).toThrow(/--mirror-default-upstream must be a registry HOST or HOST:PORT/);
  });
});
