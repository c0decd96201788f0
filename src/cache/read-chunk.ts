const KIB = 1024;
const LARGEST = 256 * KIB;
const SMALLEST = 64 * KIB;
/** What one chunk per client stream may add up to before each gets a smaller one. */
const BUDGET = 8 * 1024 * KIB;

/**
 * Read size for a client stream opened while `openStreams` others are open. Large reads matter
 * for one stream (64 KiB reads ran at half the TLS throughput of 256 KiB ones, bench/), but each
 * stream holds up to two chunks (range-sender.ts: one being read, one being written out); with
 * many streams the CPU is the limit anyway, so chunks shrink (powers of two, never below 64 KiB)
 * to keep one chunk per stream within the budget, so both within twice it.
 */
export function readChunkSize(openStreams: number): number {
  let size = LARGEST;
  while (size > SMALLEST && size * (openStreams + 1) > BUDGET) size /= 2;
  return size;
}
