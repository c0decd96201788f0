/** An inclusive byte range, as in Content-Range. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * How content by digest is answered for a request's Range and If-Range headers:
 * - whole: no Range, or an If-Range that does not name this representation (RFC 9110
 *   section 13.1.5: the whole representation, 200);
 * - range: one satisfiable byte range (206);
 * - forward: what regcache does not answer itself (several ranges, another unit, an invalid or
 *   unsatisfiable range, or a size not known yet): registries differ there (distribution answers
 *   416 or multipart/byteranges), so the upstream's own answer is relayed.
 */
export type RangePlan = { kind: "whole" } | { kind: "range"; range: ByteRange } | { kind: "forward" };

const SINGLE_RANGE = /^bytes=(\d{1,15})?-(\d{1,15})?$/;

/** Whether a Range header is one well-formed byte range (`a-b` with b >= a, `a-`, `-n`): the only kind regcache answers from its cache. Pure. */
export function isSingleByteRange(header: string): boolean {
  const match = SINGLE_RANGE.exec(header);
  if (!match || (match[1] === undefined && match[2] === undefined)) return false;
  return match[1] === undefined || match[2] === undefined || Number(match[2]) >= Number(match[1]);
}

/** The plan for a representation of `size` bytes (undefined: not known yet) whose ETag is `etag`. Pure. */
export function planRange(range: string | undefined, ifRange: string | undefined, etag: string, size: number | undefined): RangePlan {
  if (range === undefined) return { kind: "whole" };
  // Only a strong, exact match of the ETag counts; a date cannot match (regcache sends no Last-Modified).
  if (ifRange !== undefined && ifRange.trim() !== etag) return { kind: "whole" };
  if (size === undefined || !isSingleByteRange(range)) return { kind: "forward" };
  const [, first, last] = SINGLE_RANGE.exec(range)!;
  if (first === undefined) {
    const suffix = Number(last);
    return suffix === 0 || size === 0 ? { kind: "forward" } : { kind: "range", range: { start: Math.max(0, size - suffix), end: size - 1 } };
  }
  const start = Number(first);
  if (start >= size) return { kind: "forward" };
  return { kind: "range", range: { start, end: last === undefined ? size - 1 : Math.min(Number(last), size - 1) } };
}

export function contentRange(range: ByteRange, size: number): string {
  return `bytes ${range.start}-${range.end}/${size}`;
}
