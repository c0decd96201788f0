import { describe, expect, it } from "vitest";
import { formatStats } from "../../../src/cli/stats-command.js";
import type { StatsSnapshot } from "../../../src/stats/stats-snapshot.js";

const base = {
  version: "1.2.3",
  uptimeSeconds: 42,
  totals: { contentRequests: 0, hitRatio: null, byteHitRatio: null, bytesSaved: 0 },
  cache: { bytes: 0, maxBytes: 10 * 1024 ** 3, entries: 0, evictions: 0 },
  upstreams: [],
  upstreamsOmitted: 0,
  inFlight: [],
  topRepositories: [],
} as unknown as StatsSnapshot;

const snapshot = (over: Record<string, unknown>): StatsSnapshot => ({ ...base, ...over }) as StatsSnapshot;

describe("formatStats", () => {
  it("says '-' for a ratio with nothing to divide, and lists no empty sections", () => {
    expect(formatStats(base)).toBe(
      [
        "regcache 1.2.3, up 42s",
        "hit ratio - of 0 registry requests, - of bytes; 0 B served from cache",
        "cache 0 B of 10.0 GiB in 0 entries, 0 evictions",
        "",
        "upstream                          state  requests      hits       bytes  errors",
        "",
      ].join("\n"),
    );
  });

  it("prints ratios to a tenth of a percent, and aligns the upstream columns, cutting long host names", () => {
    const text = formatStats(
      snapshot({
        totals: { contentRequests: 3, hitRatio: 2 / 3, byteHitRatio: 0.5, bytesSaved: 1536 },
        upstreams: [
          { host: "registry-1.docker.io", state: "up", requests: 12, hits: 8, bytes: 5 * 1024 ** 2, errors: 0 },
          { host: `${"very-long-name.".repeat(4)}example`, state: "down", requests: 1, hits: 0, bytes: 0, errors: 1 },
        ],
        upstreamsOmitted: 7,
      }),
    );
    const lines = text.split("\n");
    expect(lines[1]).toBe("hit ratio 66.7% of 3 registry requests, 50.0% of bytes; 1.5 KiB served from cache");
    expect(lines[5]).toBe("registry-1.docker.io              up           12         8     5.0 MiB       0");
    expect(lines[6]).toBe("very-long-name.very-long-name.ve  down          1         0         0 B       1");
    expect(lines[7]).toBe("7 more hosts, less active, not listed");
  });

  it("lists downloads in progress (with their size when known) and the top images", () => {
    const digest = `sha256:${"ab".repeat(32)}`;
    const text = formatStats(
      snapshot({
        inFlight: [
          { host: "quay.io", digest, bytes: 1024, size: 4096 },
          { host: "ghcr.io", digest, bytes: 10, size: null },
        ],
        topRepositories: [{ repository: "quay.io/team/app", bytes: 2048 }],
      }),
    );
    expect(text).toContain(`\ndownloading:\n  quay.io ${digest.slice(0, 19)}… 1.0 KiB / 4.0 KiB\n  ghcr.io ${digest.slice(0, 19)}… 10 B\n`);
    expect(text.endsWith("\ntop images:\n     2.0 KiB  quay.io/team/app\n")).toBe(true);
  });
});
