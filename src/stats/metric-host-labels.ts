import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Config } from "../config/config.js";
import type { Logger } from "../log/logger.js";

/**
 * Hosts with a `host` label of their own in /metrics, at most; every other host counts as
 * "other". Clients choose the names they CONNECT to, so the number of series must be bounded.
 */
export const MAX_HOST_LABELS = 50;
/** A host that answered within this long before a start keeps its label through the start. */
const REMEMBERED_FOR_MS = 7 * 24 * 3_600_000;
/** Last-answer times are written at most this often; a new label is written at once. */
const WRITE_EVERY_MS = 60_000;

interface SavedLabels {
  /** host -> when upstream last answered it (ms since the epoch). */
  hosts: Record<string, number>;
}

/**
 * Which hosts get a label of their own. The configured registries (configuredHosts) always do; then the hosts whose upstream answered, first come,
 * first served, up to MAX_HOST_LABELS. The answered ones are remembered in the data dir with when
 * they last answered, so that after a restart during an outage `regcache_upstream_up` still names
 * the registry that is down instead of folding it into "other"; names that never answered (typos,
 * scans) never take a label. A label, once given, stays for the run: counters are cumulative.
 */
export class MetricHostLabels {
  private readonly labelled = new Set<string>();
  private readonly lastAnswer = new Map<string, number>();
  private dirty = false;
  /** performance.now() of the last write: when to write again is a duration, which a wall-clock step must not bend. */
  private lastWrite = -Infinity;
  private writing: Promise<void> | undefined;

  constructor(
    private readonly file: string,
    configured: readonly string[],
    private readonly logger: Logger,
    /** The wall clock, for when a host last answered: remembered across restarts. */
    private readonly now: () => number = Date.now,
  ) {
    for (const host of configured) if (this.labelled.size < MAX_HOST_LABELS) this.labelled.add(host.toLowerCase());
  }

  /** Restores the hosts that answered lately, most recent first. A missing or unreadable file is an empty one. */
  async load(): Promise<void> {
    let saved: SavedLabels;
    try {
      saved = JSON.parse(await readFile(this.file, "utf8")) as SavedLabels;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") this.logger.warn({ file: this.file, err: (err as Error).message }, "metric host labels: cannot read the remembered hosts; starting without them");
      return;
    }
    const recent = Object.entries(saved.hosts ?? {})
      .filter(([host, at]) => typeof host === "string" && typeof at === "number" && this.now() - at < REMEMBERED_FOR_MS)
      .sort((a, b) => b[1] - a[1]);
    for (const [host, at] of recent) {
      if (this.labelled.size >= MAX_HOST_LABELS && !this.labelled.has(host)) break;
      this.labelled.add(host);
      this.lastAnswer.set(host, at);
    }
  }

  /** The label for `host`: its own name, or "other". */
  label(host: string): string {
    return this.labelled.has(host) ? host : "other";
  }

  /** Upstream answered `host` (any status): it may take a label, and its last answer is remembered. */
  answered(host: string): void {
    if (!this.labelled.has(host)) {
      if (this.labelled.size >= MAX_HOST_LABELS) return;
      this.labelled.add(host);
      this.lastWrite = -Infinity;
    }
    this.lastAnswer.set(host, this.now());
    this.dirty = true;
    if (performance.now() - this.lastWrite >= WRITE_EVERY_MS) void this.save();
  }

  /** Writes what changed since the last write (at shutdown); resolves when the file is written or the write failed. */
  async save(): Promise<void> {
    if (this.writing) await this.writing;
    if (!this.dirty) return;
    this.dirty = false;
    this.lastWrite = performance.now();
    const body: SavedLabels = { hosts: Object.fromEntries(this.lastAnswer) };
    this.writing = writeAtomically(this.file, `${JSON.stringify(body)}\n`).catch((err: unknown) => {
      // A full or read-only disk costs only the names after a restart: the next answer writes again.
      this.dirty = true;
      this.logger.debug({ file: this.file, err: (err as Error).message }, "metric host labels: cannot write the remembered hosts");
    });
    await this.writing;
    this.writing = undefined;
  }
}

/**
 * The registries the configuration names: the CA's name constraints (quay.io, ghcr.io...), the
 * exact names of --allow-host (not its patterns) and the hosts of --credentials. --resolve is left
 * out: it says where a name is dialled, not that it is a registry clients use.
 */
export function configuredHosts(config: Pick<Config, "allowHosts">, caPermittedDomains: readonly string[], credentialHosts: Iterable<string>): string[] {
  return [...new Set([...caPermittedDomains, ...config.allowHosts.filter((h) => !h.includes("*")), ...credentialHosts].map((h) => h.toLowerCase()))];
}

async function writeAtomically(file: string, text: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const temp = `${file}.tmp-${process.pid}`;
  await writeFile(temp, text);
  await rename(temp, file);
}
