import { setFlagsFromString } from "node:v8";

/**
 * How far V8 lets its old generation grow past what survived the last full collection before it
 * collects again, while no bytes stream through the process, and while they do.
 *
 * Idle or serving from disk, a proxy's garbage is mostly entries that its bounded per-host tables
 * (leaves, circuits, stats rows, verdicts) push out, which live long enough to be promoted: with
 * 10 000 hosts the heap reached 132 MB around ~30 MB of live objects and the process 265 MiB
 * (test/e2e/many-hosts.test.ts). Growing by at most 25% between collections kept it at 72 MB of
 * heap and 159 MiB; the extra full collections of a ~30 MB heap are cheap, and the warm path
 * allocates almost nothing (bench/).
 *
 * A fill or an upload is another matter: every chunk it moves is an ArrayBuffer, and at 25% V8
 * ran a full collection every 50 to 150 ms of a fill, 10 to 20 for 200 MB (`--trace-gc`), whose
 * marking threads spent about as much CPU as the fill itself (bench/fill-cpu.ts). While any byte
 * stream runs, the heap may grow by 300% between collections (1 or 2 in such a fill); the bound
 * is back as soon as the last one ends. V8 reads the factor at every collection, so setting the
 * flag is enough either way. (0, V8's own factor, did not do: after a collection at 25% its
 * limits stayed as tight.)
 */
const BOUNDED = "--heap-growing-percent=25";
const WHILE_STREAMING = "--heap-growing-percent=300";

let bounded = false;
let streams = 0;

/** Bounds the heap's growth from now on, but while byte streams run (set once, at start-up). */
export function boundHeapGrowth(): void {
  bounded = true;
  if (streams === 0) setFlagsFromString(BOUNDED);
}

/** A byte stream (a fill, an upload) begins; the function returned says it ended (once; later calls do nothing). */
export function streamBegins(): () => void {
  streams += 1;
  if (streams === 1 && bounded) setFlagsFromString(WHILE_STREAMING);
  let ended = false;
  return () => {
    if (ended) return;
    ended = true;
    streams -= 1;
    if (streams === 0 && bounded) setFlagsFromString(BOUNDED);
  };
}
