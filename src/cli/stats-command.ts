import { Command } from "commander";
import type { StatsSnapshot } from "../stats/stats-snapshot.js";
import { formatBytes } from "./format-bytes.js";
import { fetchFromProxy, figuresProxyOption } from "./proxy-client.js";

const pct = (r: number | null): string => (r === null ? "-" : `${(r * 100).toFixed(1)}%`);

/** The peers line: who is configured and who answers. */
function peersLine(peers: StatsSnapshot["peers"]): string {
  if (!peers) return "peers: none configured (this replica is the whole cache)";
  const silent = peers.members.filter((m) => !m.live).map((m) => m.address);
  return `peers: ${peers.members.length - silent.length} of ${peers.members.length} live${silent.length > 0 ? `; not answering: ${silent.join(", ")}` : ""}`;
}

/** The stats page's summary, as terminal text. Pure, so it is tested without a proxy. */
export function formatStats(s: StatsSnapshot): string {
  const lines = [
    `regcache ${s.version}, up ${s.uptimeSeconds}s`,
    `hit ratio ${pct(s.totals.hitRatio)} of ${s.totals.contentRequests} registry requests, ${pct(s.totals.byteHitRatio)} of bytes; ${formatBytes(s.totals.bytesSaved)} served from cache`,
    `stale answers ${s.totals.stale} (tags served from the cache while their registry was unavailable)`,
    `cache ${formatBytes(s.cache.bytes)} of ${formatBytes(s.cache.maxBytes)} in ${s.cache.entries} entries, ${s.cache.evictions} evictions`,
    peersLine(s.peers),
    "",
    "upstream                          state    requests      hits   stale       bytes  errors",
  ];
  for (const u of s.upstreams) {
    lines.push(`${u.host.padEnd(32).slice(0, 32)}  ${u.state.padEnd(7)}  ${String(u.requests).padStart(8)}  ${String(u.hits).padStart(8)}  ${String(u.stale).padStart(6)}  ${formatBytes(u.bytes).padStart(10)}  ${String(u.errors).padStart(6)}`);
    if (u.state !== "up" && u.lastError) lines.push(`  ${u.state === "failing" ? `${u.consecutiveFailures} failures in a row; ` : ""}last error: ${u.lastError}`);
  }
  if (s.upstreamsOmitted > 0) lines.push(`${s.upstreamsOmitted} more hosts, less active, not listed`);
  if (s.inFlight.length > 0) {
    lines.push("", "downloading:");
    for (const d of s.inFlight) lines.push(`  ${d.host} ${d.digest.slice(0, 19)}… ${formatBytes(d.bytes)}${d.size ? ` / ${formatBytes(d.size)}` : ""}`);
  }
  if (s.topRepositories.length > 0) {
    lines.push("", "top images:");
    for (const r of s.topRepositories) lines.push(`  ${formatBytes(r.bytes).padStart(10)}  ${r.repository}`);
  }
  return `${lines.join("\n")}\n`;
}

export function statsCommand(): Command {
  return new Command("stats")
    .description("show a running regcache's statistics")
    .addOption(figuresProxyOption("the regcache to ask"))
    .option("--json", "print the raw JSON of /api/stats")
    .action(async (opts: { proxy: string; json?: boolean }) => {
      const snapshot = JSON.parse(await fetchFromProxy(opts.proxy, "/api/stats")) as StatsSnapshot;
      process.stdout.write(opts.json ? `${JSON.stringify(snapshot, null, 2)}\n` : formatStats(snapshot));
    });
}
