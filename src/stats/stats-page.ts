/**
 * The stats page: one self-contained document (no external assets, no CDN), because
 * it must work in an air-gapped cluster. It polls /api/stats and draws with SVG.
 */
export const STATS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>regcache</title>
<style>
:root { --bg:#0f1419; --panel:#182028; --line:#2a3542; --text:#e6edf3; --muted:#8b98a5; --ok:#3fb950; --bad:#f85149; --warn:#d29922; --accent:#58a6ff; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui, -apple-system, Segoe UI, Roboto, sans-serif; background:var(--bg); color:var(--text); }
header { display:flex; flex-wrap:wrap; align-items:baseline; gap:.75rem; padding:1rem 1.25rem; border-bottom:1px solid var(--line); }
header h1 { margin:0; font-size:1.25rem; }
header .meta { color:var(--muted); }
main { padding:1rem 1.25rem; display:grid; gap:1rem; grid-template-columns:repeat(12, 1fr); }
section { background:var(--panel); border:1px solid var(--line); border-radius:8px; padding:.9rem 1rem; grid-column:span 12; min-width:0; }
section h2 { margin:0 0 .6rem; font-size:.8rem; text-transform:uppercase; letter-spacing:.06em; color:var(--muted); }
.cards { display:grid; grid-template-columns:repeat(auto-fit, minmax(150px, 1fr)); gap:.75rem; }
.card { background:var(--bg); border:1px solid var(--line); border-radius:6px; padding:.6rem .8rem; }
.card .v { font-size:clamp(1.1rem, 4.5vw, 1.6rem); font-weight:600; }
.card .l { color:var(--muted); font-size:.8rem; }
table { width:100%; border-collapse:collapse; font-variant-numeric:tabular-nums; }
th, td { text-align:left; padding:.3rem .4rem; border-bottom:1px solid var(--line); white-space:nowrap; overflow:hidden; text-overflow:ellipsis; max-width:22rem; }
th { color:var(--muted); font-weight:500; font-size:.8rem; }
td.n, th.n { text-align:right; }
.badge { display:inline-block; padding:0 .45rem; border-radius:999px; font-size:.75rem; font-weight:600; }
.up { background:rgba(63,185,80,.15); color:var(--ok); } .down { background:rgba(248,81,73,.15); color:var(--bad); } .stale, .failing { background:rgba(210,153,34,.15); color:var(--warn); }
/* The upstream table never scrolls sideways: names and the last error wrap, and the error has a line of its own. */
#upstreams td { white-space:normal; overflow-wrap:anywhere; max-width:none; }
#upstreams tr.lasterr td { color:var(--muted); font-size:.8rem; padding-top:0; }
#upstreams tr.haserr td { border-bottom:none; }
#upstreams .badge { white-space:nowrap; }
#upstreams td.host { min-width:7.5rem; }
.bar { height:8px; background:var(--bg); border:1px solid var(--line); border-radius:4px; overflow:hidden; }
.bar > div { height:100%; background:var(--accent); }
.muted { color:var(--muted); }
pre { background:var(--bg); border:1px solid var(--line); border-radius:6px; padding:.6rem; overflow-x:auto; font-size:.8rem; }
a { color:var(--accent); }
svg text { fill:var(--muted); font-size:10px; }
.scroll { overflow-x:auto; }
@media (min-width: 900px) { .half { grid-column:span 6; } }
/* On a phone the less telling columns go, so hits and errors stay on screen without scrolling. */
@media (max-width: 600px) { .wide { display:none; } th, td { padding:.3rem .25rem; max-width:11rem; } }
</style>
</head>
<body>
<header><h1>regcache</h1><span class="meta" id="meta">loading…</span></header>
<main>
  <section>
    <h2>At a glance</h2>
    <div class="cards">
      <div class="card"><div class="v" id="hitRatio">–</div><div class="l">hit ratio (requests)</div></div>
      <div class="card"><div class="v" id="byteHitRatio">–</div><div class="l">hit ratio (bytes)</div></div>
      <div class="card"><div class="v" id="bytesSaved">–</div><div class="l">bytes served from cache</div></div>
      <div class="card"><div class="v" id="requests">–</div><div class="l">blob and manifest requests</div></div>
      <div class="card"><div class="v" id="stale">–</div><div class="l">answered stale (upstream unavailable)</div></div>
      <div class="card"><div class="v" id="cacheSize">–</div><div class="l">cache used</div><div class="bar" style="margin-top:.35rem"><div id="cacheBar" style="width:0"></div></div></div>
    </div>
  </section>
  <section>
    <h2>Upstream registries</h2>
    <table id="upstreams"><thead><tr><th>host</th><th>state</th><th class="n wide" title="every request for this host: pings, tags, tokens, uploads too">all requests</th><th class="n">hits</th><th class="n" title="tags answered from the cache while this registry was unavailable">stale</th><th class="n" title="answers of 5xx, or upstream not reached">errors</th><th class="n wide" title="body bytes sent to clients, from the cache or from upstream">bytes served</th></tr></thead><tbody></tbody></table>
  </section>
  <section class="half">
    <h2>Last hour</h2>
    <svg id="chart" viewBox="0 0 600 160" width="100%" role="img" aria-label="throughput and hit ratio over the last hour"></svg>
    <div class="muted" style="font-size:.8rem"><span style="color:var(--accent)">■</span> throughput per minute &nbsp; <span style="color:var(--ok)">■</span> hit ratio</div>
  </section>
  <section class="half">
    <h2>Downloads in progress</h2>
    <div id="inflight" class="muted">none</div>
  </section>
  <section class="half">
    <h2>Cache health</h2>
    <div id="health" class="muted">–</div>
    <p class="muted" style="font-size:.8rem">What is cached, by image: <a href="/api/cache/images">/api/cache/images</a> (JSON, for clients on this host's loopback, or with the bearer token when <code>--admin-token</code> is set), or <code>regcache cache ls</code>.</p>
  </section>
  <section class="half">
    <h2>Not intercepted (CONNECT)</h2>
    <div class="scroll"><table id="connects"><thead><tr><th>host</th><th class="n">tunnelled</th><th class="n">denied</th></tr></thead><tbody></tbody></table></div>
  </section>
  <section class="half" id="peersSection">
    <h2>Replicas (peers)</h2>
    <p id="noPeers" class="muted" hidden>No peers configured: this replica is the whole cache. <code>--peer</code> or <code>--peers-dns</code> make replicas one cache.</p>
    <div class="scroll"><table id="peers"><thead><tr><th>peer</th><th>state</th><th>since</th><th>last error</th></tr></thead><tbody></tbody></table></div>
  </section>
  <section class="half">
    <h2>Top images</h2>
    <div class="scroll"><table id="top"><thead><tr><th>repository</th><th class="n">bytes served</th></tr></thead><tbody></tbody></table></div>
  </section>
  <section>
    <h2>Recent requests</h2>
    <div class="scroll"><table id="recent"><thead><tr><th class="wide">time</th><th class="wide">host</th><th>repository</th><th class="wide">kind</th><th>cache</th><th class="n">status</th><th class="n">bytes</th><th class="n wide">ms</th></tr></thead><tbody></tbody></table></div>
  </section>
  <section>
    <h2>Set up a node</h2>
    <p>Download the root CA: <a href="/ca.crt" download>ca.crt</a>. Trust it and point the container runtime at this proxy:</p>
    <pre id="snippet"></pre>
  </section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const bytes = (n) => { if (n == null) return "–"; const u = ["B","KiB","MiB","GiB","TiB"]; let i = 0; while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; } return (i ? n.toFixed(1) : n) + " " + u[i]; };
const pct = (r) => r == null ? "–" : (r * 100).toFixed(1) + "%";
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&":"&amp;", "<":"&lt;", ">":"&gt;", '"':"&quot;", "'":"&#39;" })[c]);
const dur = (s) => s < 120 ? s + " s" : s < 7200 ? Math.round(s / 60) + " min" : (s / 3600).toFixed(1) + " h";
function snippet(proxyPort) {
  // The page may be on --admin-listen's port: nodes use the proxy port.
  const proxy = location.protocol + "//" + location.hostname + ":" + proxyPort;
  $("snippet").textContent = [
    "curl -fsS " + proxy + "/ca.crt -o /usr/local/share/ca-certificates/regcache.crt && update-ca-certificates",
    "mkdir -p /etc/systemd/system/containerd.service.d",
    "printf '[Service]\\\\nEnvironment=HTTPS_PROXY=" + proxy + "\\\\nEnvironment=NO_PROXY=localhost,127.0.0.1,.svc,.cluster.local\\\\n' > /etc/systemd/system/containerd.service.d/http-proxy.conf",
    "systemctl daemon-reload && systemctl restart containerd",
    "# or all of it at once: curl -fsS " + proxy + "/setup/node.sh | sh -s -- --runtime containerd --restart",
  ].join("\\n");
}
function rows(tbody, items, render) { tbody.innerHTML = items.length ? items.map(render).join("") : '<tr><td class="muted" colspan="8">none yet</td></tr>'; }
function chart(series) {
  const w = 600, h = 160, pad = 22, max = Math.max(1, ...series.map((p) => p.bytes));
  const x = (i) => pad + (i * (w - 2 * pad)) / Math.max(1, series.length - 1);
  const yb = (v) => h - pad - (v / max) * (h - 2 * pad);
  const yr = (r) => h - pad - r * (h - 2 * pad);
  const bytesLine = series.map((p, i) => x(i).toFixed(1) + "," + yb(p.bytes).toFixed(1)).join(" ");
  const ratioPts = series.map((p, i) => p.hitRatio == null ? null : x(i).toFixed(1) + "," + yr(p.hitRatio).toFixed(1)).filter(Boolean).join(" ");
  $("chart").innerHTML =
    '<line x1="' + pad + '" y1="' + (h - pad) + '" x2="' + (w - pad) + '" y2="' + (h - pad) + '" stroke="#2a3542"/>' +
    '<polyline fill="none" stroke="#58a6ff" stroke-width="2" points="' + bytesLine + '"/>' +
    (ratioPts ? '<polyline fill="none" stroke="#3fb950" stroke-width="2" stroke-dasharray="4 3" points="' + ratioPts + '"/>' : "") +
    '<text x="' + pad + '" y="12">' + bytes(max) + '/min</text><text x="' + (w - pad - 40) + '" y="12">100% hits</text>' +
    '<text x="' + pad + '" y="' + (h - 6) + '">−60 min</text><text x="' + (w - pad - 20) + '" y="' + (h - 6) + '">now</text>';
}
async function refresh() {
  let s;
  try { s = await (await fetch("/api/stats", { cache: "no-store" })).json(); } catch { $("meta").textContent = "cannot reach /api/stats"; return; }
  if (!$("snippet").textContent) snippet(s.proxyPort);
  $("meta").textContent = "v" + s.version + " · up " + dur(s.uptimeSeconds) + " · updated " + new Date().toLocaleTimeString();
  $("hitRatio").textContent = pct(s.totals.hitRatio);
  $("byteHitRatio").textContent = pct(s.totals.byteHitRatio);
  $("bytesSaved").textContent = bytes(s.totals.bytesSaved);
  $("requests").textContent = s.totals.contentRequests;
  $("stale").textContent = s.totals.stale;
  $("cacheSize").textContent = bytes(s.cache.bytes) + " / " + bytes(s.cache.maxBytes);
  $("cacheBar").style.width = Math.min(100, (100 * s.cache.bytes) / s.cache.maxBytes).toFixed(1) + "%";
  rows($("upstreams").tBodies[0], s.upstreams, (u) => {
    const state = u.state === "down"
      ? '<span class="badge down">down</span> <span class="muted">since ' + (u.since ? new Date(u.since).toLocaleTimeString() : "?") + "</span>"
      : u.state === "failing"
        ? '<span class="badge failing" title="the last requests failed; the circuit opens after --failure-threshold in a row">failing</span> <span class="muted">' + u.consecutiveFailures + " in a row</span>"
        : '<span class="badge up">up</span>';
    const stale = u.state !== "up" && u.stale > 0 ? ' <span class="badge stale">serving stale</span>' : "";
    const error = u.lastError && u.state !== "up" ? '<tr class="lasterr"><td colspan="7">last error: ' + esc(u.lastError) + "</td></tr>" : "";
    return '<tr data-host="' + esc(u.host) + '"' + (error ? ' class="haserr"' : "") + '><td class="host">' + esc(u.host) + "</td><td>" + state + stale + '</td><td class="n wide">' + u.requests + '</td><td class="n">' + u.hits + '</td><td class="n">' + u.stale + '</td><td class="n">' + u.errors + '</td><td class="n wide">' + bytes(u.bytes) + "</td></tr>" + error;
  });
  if (s.upstreamsOmitted > 0) $("upstreams").tBodies[0].insertAdjacentHTML("beforeend", '<tr id="upstreamsOmitted"><td class="muted" colspan="7">' + s.upstreamsOmitted + " more hosts, less active, not listed</td></tr>");
  $("inflight").innerHTML = s.inFlight.length ? s.inFlight.map((d) => {
    const p = d.size ? Math.min(100, (100 * d.bytes) / d.size) : 0;
    return '<div style="margin:.3rem 0"><div class="muted" style="font-size:.8rem">' + esc(d.repository ?? d.host) + " " + esc(d.digest.slice(0, 19)) + "… " + bytes(d.bytes) + (d.size ? " / " + bytes(d.size) : "") + '</div><div class="bar"><div style="width:' + p.toFixed(1) + '%"></div></div></div>';
  }).join("") : "none";
  const c = s.cache;
  $("health").innerHTML = [
    c.diskFault
      ? '<span class="badge down">disk read-only</span> cannot ' + esc(c.diskFault.action) + ": " + esc(c.diskFault.reason) + " since " + new Date(c.diskFault.since).toLocaleTimeString() + "; cached content is served, downloads stream through uncached (" + c.uncachedForDiskFault + " so far)"
      : c.diskFull ? '<span class="badge down">disk full</span> downloads stream through uncached (' + c.uncachedForSpace + " so far)" : '<span class="badge up">disk ok</span>',
    c.indexWriteError ? '<span class="badge down">index not durable</span> ' + esc(c.indexWriteError) : "",
    c.damagedFiles + " damaged files found and refetched, " + c.missingFiles + " missing",
    s.shared ? sharedTier(s.shared) : "",
  ].filter(Boolean).join("<br>");
  rows($("connects").tBodies[0], s.notIntercepted, (c) => "<tr><td>" + esc(c.host) + '</td><td class="n">' + c.tunnelled + '</td><td class="n">' + c.denied + "</td></tr>");
  $("noPeers").hidden = !!s.peers;
  $("peers").hidden = !s.peers;
  if (s.peers) rows($("peers").tBodies[0], s.peers.members, (p) => "<tr><td>" + esc(p.address) + "</td><td>" + (p.live ? '<span class="badge up">live</span>' : '<span class="badge down">not answering</span>') + "</td><td>" + new Date(p.since).toLocaleTimeString() + "</td><td>" + esc(p.lastError ?? "") + "</td></tr>");
  rows($("top").tBodies[0], s.topRepositories, (r) => "<tr><td>" + esc(r.repository) + '</td><td class="n">' + bytes(r.bytes) + "</td></tr>");
  rows($("recent").tBodies[0], s.recentRequests.slice(0, 20), (r) => '<tr><td class="wide">' + new Date(r.time).toLocaleTimeString() + '</td><td class="wide">' + esc(r.host) + "</td><td>" + esc(r.repository ?? "") + '</td><td class="wide">' + esc(r.kind) + "</td><td>" + esc(r.cache) + '</td><td class="n">' + r.status + '</td><td class="n">' + bytes(r.bytes) + '</td><td class="n wide">' + r.durationMs + "</td></tr>");
  chart(s.series);
}
function sharedTier(t) {
  const part = (name, state) => state === "off" ? "" : '<span class="badge ' + (state === "up" ? "up" : "down") + '">' + name + " " + (state === "up" ? "ok" : "down") + "</span> ";
  return "Fleet: " + part("object store", t.objectStore) + part("index", t.index) + (t.degraded ? "serving without what is down; " : "") +
    t.objectFills + " from the object store, " + t.holderFills + " from lease holders, " + t.uploads.uploaded + " uploaded (" + t.uploads.queued + " queued), " + t.duplicateFetches + " duplicate upstream fetches";
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
`;
