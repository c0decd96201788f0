import { setFlagsFromString } from "node:v8";

/**
 * V8 lets its old generation grow to several times what survived the last full collection
 * before it collects again. A proxy's garbage is mostly entries that its bounded per-host
 * tables (leaves, circuits, stats rows, verdicts) push out, which live long enough to be
 * promoted: with 10 000 hosts the heap reached 132 MB around ~30 MB of live objects and the
 * process 265 MiB (test/e2e/many-hosts.test.ts). Growing by at most 25% between collections
 * kept it at 72 MB of heap and 159 MiB; the extra full collections of a ~30 MB heap are
 * cheap, and the warm path allocates almost nothing (bench/). V8 reads the factor at every
 * collection, so setting it at start-up is enough.
 */
export function boundHeapGrowth(): void {
  setFlagsFromString("--heap-growing-percent=25");
}
