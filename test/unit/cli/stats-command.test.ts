import { describe, expect, it } from "vitest";
import { formatStats } from "../../../src/cli/stats-command.js";
import type { StatsSnapshot } from "../../../src/stats/stats-snapshot.js";

const base = {
  version: "1.2.3",
  uptimeSeconds: 42,
  totals: { contentRequests: 0, hitRatio: null, byteHitRatio: null, bytesSaved: 0, stale: 0 },
  cache: { bytes: 0, maxBytes: 10 * 1024 ** 3, entries: 0, evictions: 0 },
  upstreams: [],
  upstreamsOmitted: 0,
  peers: null,
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
        "stale answers 0 (tags served from the cache while their registry was unavailable)",
        "cache 0 B of 10.0 GiB in 0 entries, 0 evictions",
        "peers: none configured (this replica is the whole cache)",
        "",
        "upstream                          state    requests      hits   stale       bytes  errors",
        "",
      ].join("\n"),
    );
  });

  it("prints ratios to a tenth of a percent, and aligns the upstream columns, cutting long host names", () => {
    const text = formatStats(
      snapshot({
        totals: { contentRequests: 3, hitRatio: 2 / 3, byteHitRatio: 0.5, bytesSaved: 1536, stale: 4 },
        upstreams: [
          { host: "registry-1.docker.io", state: "up", requests: 12, hits: 8, stale: 0, bytes: 5 * 1024 ** 2, errors: 0, consecutiveFailures: 0, lastError: "HTTP 503" },
          { host: `${"very-long-name.".repeat(4)}example`, state: "down", requests: 1, hits: 0, stale: 4, bytes: 0, errors: 1, consecutiveFailures: 3, lastError: "upstream quay.io: connection failed (ECONNREFUSED)" },
          { host: "ghcr.io", state: "failing", requests: 2, hits: 0, stale: 0, bytes: 0, errors: 2, consecutiveFailures: 2, lastError: "HTTP 502" },
        ],
        upstreamsOmitted: 7,
      }),
    );
    const lines = text.split("\n");
    expect(lines[1]).toBe("hit ratio 66.7% of 3 registry requests, 50.0% of bytes; 1.5 KiB served from cache");
    expect(lines[2]).toBe("stale answers 4 (tags served from the cache while their registry was unavailable)");
    expect(lines.slice(7, 13)).toEqual([
      "registry-1.docker.io              up             12         8       0     5.0 MiB       0",
      "very-long-name.very-long-name.ve  down            1         0       4         0 B       1",
      "  last error: upstream quay.io: connection failed (ECONNREFUSED)",
      "ghcr.io                           failing         2         0       0         0 B       2",
      "  2 failures in a row; last error: HTTP 502",
      "7 more hosts, less active, not listed",
    ]);
  });

  it("says which peers answer", () => {
    const members = [
      { address: "10.0.0.2:3129", live: true },
      { address: "10.0.0.3:3129", live: false },
    ];
    expect(formatStats(snapshot({ peers: { self: "10.0.0.1:3129", members } })).split("\n")[4]).toBe("peers: 1 of 2 live; not answering: 10.0.0.3:3129");
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
