import forge from "node-forge";
import { describe, expect, it } from "vitest";
import { oid, sequence, Tag, time, tlv } from "../../../src/tls/der.js";

describe("DER", () => {
  it("encodes lengths in short and long form", () => {
    expect(tlv(Tag.OCTET_STRING, Buffer.alloc(0))).toEqual(Buffer.from([0x04, 0x00]));
    expect(tlv(Tag.OCTET_STRING, Buffer.alloc(127)).subarray(0, 2)).toEqual(Buffer.from([0x04, 0x7f]));
    expect(tlv(Tag.OCTET_STRING, Buffer.alloc(128)).subarray(0, 3)).toEqual(Buffer.from([0x04, 0x81, 0x80]));
    expect(tlv(Tag.OCTET_STRING, Buffer.alloc(300)).subarray(0, 4)).toEqual(Buffer.from([0x04, 0x82, 0x01, 0x2c]));
    expect(tlv(Tag.OCTET_STRING, Buffer.alloc(70_000)).subarray(0, 5)).toEqual(Buffer.from([0x04, 0x83, 0x01, 0x11, 0x70]));
  });

  it("encodes OIDs as forge does, including arcs of more than 7 bits", () => {
    for (const id of ["2.5.4.3", "1.2.840.10045.4.3.2", "1.3.6.1.5.5.7.3.1", "2.5.29.17", "1.2.840.113549.1.1.11"]) {
      const expected = forge.asn1.toDer(forge.asn1.create(forge.asn1.Class.UNIVERSAL, forge.asn1.Type.OID, false, forge.asn1.oidToDer(id).getBytes())).getBytes();
      expect(oid(id).toString("latin1")).toBe(expected);
    }
  });

  it("writes UTCTime through 2049 and GeneralizedTime from 2050 (RFC 5280)", () => {
    expect(time(new Date("2049-12-31T23:59:59.999Z")).toString("latin1")).toBe("\x17\x0d491231235959Z");
    expect(time(new Date("2050-01-01T00:00:00Z")).toString("latin1")).toBe("\x18\x0f20500101000000Z");
  });

  it("nests values in order", () => {
    expect(sequence(tlv(Tag.INTEGER, Buffer.from([1])), sequence())).toEqual(Buffer.from([0x30, 0x05, 0x02, 0x01, 0x01, 0x30, 0x00]));
  });
});
