/** An inclusive byte range, as in Content-Range. */
export interface ByteRange {
  start: number;
  end: number;
}

export type RangeResult =
  | { kind: "none" }
  | { kind: "range"; range: ByteRange }
  | { kind: "unsatisfiable" }
  /** Syntactically invalid or several ranges: RFC 9110 lets us ignore it and send the whole body. */
  | { kind: "ignore" };

const MAX_RANGE_HEADER = 256;

/**
 * Parses a Range header against a representation of `size` bytes (RFC 9110 section 14).
 * Supports bytes=a-b, bytes=a-, bytes=-n. Several ranges are answered with the whole body.
 */
export function parseRange(header: string | undefined, size: number): RangeResult {
  if (header === undefined) return { kind: "none" };
  if (header.length > MAX_RANGE_HEADER) return { kind: "ignore" };
  const match = /^\s*bytes\s*=\s*(.+)$/i.exec(header);
  if (!match) return { kind: "ignore" };
  const specs = match[1]!.split(",").map((s) => s.trim());
  if (specs.length !== 1) return { kind: "ignore" };
  const spec = /^(\d{0,16})-(\d{0,16})$/.exec(specs[0]!);
  if (!spec || (spec[1] === "" && spec[2] === "")) return { kind: "ignore" };
  if (spec[1] === "") {
    const suffix = Number(spec[2]);
    if (suffix === 0 || size === 0) return { kind: "unsatisfiable" };
    return { kind: "range", range: { start: Math.max(0, size - suffix), end: size - 1 } };
  }
  const start = Number(spec[1]);
  if (spec[2] !== "" && Number(spec[2]) < start) return { kind: "ignore" };
  if (start >= size) return { kind: "unsatisfiable" };
  const end = spec[2] === "" ? size - 1 : Number(spec[2]);
  return { kind: "range", range: { start, end: Math.min(end, size - 1) } };
}

export function contentRange(range: ByteRange, size: number): string {
  return `bytes ${range.start}-${range.end}/${size}`;
}
