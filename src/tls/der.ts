/**
 * The few DER encodings a leaf certificate needs (X.690), written directly into Buffers.
 * Pure: no I/O.
 */

export const Tag = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** One tag-length-value; lengths up to 2^32 - 1. */
export function tlv(tag: number, ...contents: Buffer[]): Buffer {
  const body = contents.length === 1 ? contents[0]! : Buffer.concat(contents);
  return Buffer.concat([Buffer.from([tag]), encodeLength(body.length), body]);
}

function encodeLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const bytes: number[] = [];
  for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest % 256);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

export const sequence = (...contents: Buffer[]): Buffer => tlv(Tag.SEQUENCE, ...contents);

/** A context-specific tag: [n] EXPLICIT wraps a value (constructed); [n] IMPLICIT replaces a primitive's tag. */
export const explicit = (n: number, content: Buffer): Buffer => tlv(0xa0 | n, content);
export const implicitPrimitive = (n: number, content: Buffer): Buffer => tlv(0x80 | n, content);

export function oid(dotted: string): Buffer {
  const [first, second, ...rest] = dotted.split(".").map(Number);
  const bytes = [first! * 40 + second!];
  for (const arc of rest) {
    const base128: number[] = [];
    for (let v = arc; ; v = Math.floor(v / 128)) {
      base128.unshift((v % 128) | (base128.length > 0 ? 0x80 : 0));
      if (v < 128) break;
    }
    bytes.push(...base128);
  }
  return tlv(Tag.OID, Buffer.from(bytes));
}

/**
 * RFC 5280 section 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050, both in UTC with
 * seconds and no fraction.
 */
export function time(date: Date): Buffer {
  const iso = date.toISOString();
  const digits = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
  return date.getUTCFullYear() < 2050 ? tlv(Tag.UTC_TIME, Buffer.from(digits.slice(2), "latin1")) : tlv(Tag.GENERALIZED_TIME, Buffer.from(digits, "latin1"));
}
