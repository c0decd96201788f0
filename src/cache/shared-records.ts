/**
 * Records the fleet shares (--index redis://...): tag answers and access verdicts that every
 * replica writes through and reads back, so that a replica that never saw a tag, or restarted
 * empty, answers for it during an outage. The local index keeps its own copy of each: when the
 * shared one cannot be reached, the replica answers from what it recorded itself.
 */
export interface SharedRecords {
  /** Whether a record key ("tag:…", "meta:…") is shared at all. */
  shares(key: string): boolean;
  /** The shared copy; undefined when there is none or the shared index cannot be reached. */
  get<T>(key: string): Promise<T | undefined>;
  /** Writes the shared copy; never rejects (a lost write costs an upstream round trip later). */
  put(key: string, value: unknown): void;
}

/** When a record was made, where it says: a tag answer's `recorded`, a verdict's `checkedAt`, a confirmation's time. */
function madeAt(record: unknown): number | undefined {
  if (typeof record === "number") return record;
  if (typeof record !== "object" || record === null) return undefined;
  const { recorded, checkedAt } = record as { recorded?: unknown; checkedAt?: unknown };
  if (typeof recorded === "number") return recorded;
  return typeof checkedAt === "number" ? checkedAt : undefined;
}

/** A clock this far ahead is another replica's error (or a forged record): its records are not taken. */
export const CLOCK_SKEW_MS = 60_000;

/**
 * The newer of a local and a shared copy of a record; the local one when neither says when it was
 * made. A shared record dated in the future is ignored: it would outrank every newer answer and
 * stay fresh past its TTL. Pure.
 */
export function newerRecord<T>(local: T | undefined, shared: T | undefined, now = Date.now()): T | undefined {
  if (shared === undefined || (madeAt(shared) ?? 0) > now + CLOCK_SKEW_MS) return local;
  if (local === undefined) return shared;
  return (madeAt(shared) ?? -Infinity) > (madeAt(local) ?? Infinity) ? shared : local;
}
