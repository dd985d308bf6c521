// TLS ClientHello peeking: reassemble the first handshake message from
// however many records and TCP segments it arrives in, then read its
// server_name. TLS is never terminated; the bytes go upstream untouched.

import { normalizeHostname } from '../../routing/hostmatch.js'
import { ChunkReader, streamSlice } from './reader.js'
import type { NameResult } from './types.js'

export const TLS_RECORD_HANDSHAKE = 0x16
const HANDSHAKE_CLIENT_HELLO = 0x01
const EXT_SERVER_NAME = 0x0000
const NAME_TYPE_HOST_NAME = 0x00

const MALFORMED: NameResult = Object.freeze({ ok: false, reason: 'malformed' })
const NO_SNI: NameResult = Object.freeze({ ok: false, reason: 'absent' })
const BAD_NAME: NameResult = Object.freeze({ ok: false, reason: 'bad-name' })

/**
 * Read the server_name of a ClientHello body (the handshake message without
 * its 4-byte header). Every length is checked against the bytes that remain
 * before it is used (RFC 6066 §11.1); nothing here can index out of range.
 * Structure as in RFC 8446 §4.1.2, which TLS 1.0-1.2 hellos share.
 */
export function parseClientHelloBody (b: Buffer): NameResult {
  const end = b.length
  // legacy_version(2) random(32) session_id_len(1)
  let p = 2 + 32
  if (p + 1 > end) return MALFORMED
  const sid = b[p++] as number
  if (sid > 32 || p + sid > end) return MALFORMED
  p += sid
  if (p + 2 > end) return MALFORMED
  const cs = b.readUInt16BE(p)
  p += 2
  // cipher_suites<2..2^16-2>: pairs of bytes
  if (cs < 2 || (cs & 1) !== 0 || p + cs > end) return MALFORMED
  p += cs
  if (p + 1 > end) return MALFORMED
  const cm = b[p++] as number
  if (cm < 1 || p + cm > end) return MALFORMED
  p += cm
  // RFC 5246 §7.4.1.2: a TLS 1.2 hello may stop here, with no extensions.
  if (p === end) return NO_SNI
  if (p + 2 > end) return MALFORMED
  const extLen = b.readUInt16BE(p)
  p += 2
  // Extensions must fill the message exactly (trailing bytes are malformed).
  if (p + extLen !== end) return MALFORMED
  let result: NameResult | undefined
  while (p < end) {
    if (p + 4 > end) return MALFORMED
    const type = b.readUInt16BE(p)
    const len = b.readUInt16BE(p + 2)
    p += 4
    if (p + len > end) return MALFORMED
    // GREASE (RFC 8701) and every other unknown type is skipped by length.
    if (type === EXT_SERVER_NAME) {
      // RFC 8446 §4.2: no extension type may appear twice.
      if (result !== undefined) return MALFORMED
      result = parseServerNameExtension(b, p, p + len)
      if (result === MALFORMED) return MALFORMED
    }
    p += len
  }
  return result ?? NO_SNI
}

/** RFC 6066 §3: ServerNameList = server_name_list<1..2^16-1> of (name_type, HostName<1..2^16-1>). */
function parseServerNameExtension (b: Buffer, start: number, end: number): NameResult {
  if (start + 2 > end) return MALFORMED
  const listLen = b.readUInt16BE(start)
  let p = start + 2
  if (listLen === 0 || p + listLen !== end) return MALFORMED
  let nameStart = -1
  let nameEnd = -1
  while (p < end) {
    if (p + 3 > end) return MALFORMED
    const type = b[p] as number
    const len = b.readUInt16BE(p + 1)
    p += 3
    if (p + len > end) return MALFORMED
    if (type === NAME_TYPE_HOST_NAME) {
      // RFC 6066 §3: at most one name of each name_type.
      if (nameStart >= 0) return MALFORMED
      nameStart = p
      nameEnd = p + len
    }
    p += len
  }
  if (nameStart < 0) return NO_SNI
  if (nameEnd === nameStart) return BAD_NAME // zero-length HostName
  for (let i = nameStart; i < nameEnd; i++) {
    if ((b[i] as number) >= 0x80) return BAD_NAME // RFC 6066 §3: ASCII only (A-labels)
  }
  const name = normalizeHostname(b.toString('latin1', nameStart, nameEnd))
  return name === undefined ? BAD_NAME : { ok: true, name }
}

/**
 * What the assembler found so far: NeedMore; Complete (the ClientHello is in
 * `body`); Malformed (not a ClientHello we can read: default route);
 * TooLarge (the hello is longer than the limit).
 */
export const TlsStep = { NeedMore: 0, Complete: 1, Malformed: 2, TooLarge: 3 } as const
export type TlsStep = typeof TlsStep[keyof typeof TlsStep]

/**
 * Follows the record layer incrementally. Each pushed byte is looked at once
 * at most; handshake payload is skipped in runs, and the hello is copied out
 * only when its last byte has arrived (RFC 8446 §5.1: a handshake message may
 * span records, and records may be split across segments at any byte).
 */
export class TlsHelloAssembler {
  /** The ClientHello body once Complete. */
  body: Buffer | undefined
  /** Record headers seen. */
  records = 0
  private readonly maxHello: number
  private hdrLeft = 5
  private hdrLen = 0
  private recLeft = 0
  private hsSeen = 0
  private hsLen = 0

  constructor (maxHello: number) {
    this.maxHello = maxHello
  }

  step (r: ChunkReader, length: number, chunks: readonly Buffer[]): TlsStep {
    while (r.pos < length) {
      if (this.hdrLeft > 0) {
        const byte = r.u8()
        switch (this.hdrLeft) {
          case 5:
            // RFC 8446 §5.1: handshake records must not interleave with other types.
            if (byte !== TLS_RECORD_HANDSHAKE) return TlsStep.Malformed
            break
          case 4:
            // Any 3.x legacy_record_version: clients send 3.1 for compatibility, some 3.0..3.4.
            if (byte !== 0x03) return TlsStep.Malformed
            break
          case 2:
            this.hdrLen = byte << 8
            break
          case 1:
            this.hdrLen |= byte
            // RFC 8446 §5.1: zero-length handshake fragments are forbidden.
            if (this.hdrLen === 0) return TlsStep.Malformed
            this.recLeft = this.hdrLen
            this.records++
            break
        }
        this.hdrLeft--
        continue
      }
      if (this.hsSeen < 4) {
        const byte = r.u8()
        this.hsSeen++
        this.recLeft--
        if (this.hsSeen === 1) {
          if (byte !== HANDSHAKE_CLIENT_HELLO) return TlsStep.Malformed
        } else {
          this.hsLen = (this.hsLen << 8) | byte
          if (this.hsSeen === 4) {
            if (this.hsLen > this.maxHello) return TlsStep.TooLarge
            if (this.hsLen === 0) return TlsStep.Malformed
          }
        }
      } else {
        const want = 4 + this.hsLen - this.hsSeen
        const n = Math.min(want, this.recLeft, length - r.pos)
        r.skip(n)
        this.hsSeen += n
        this.recLeft -= n
        if (n === want) {
          this.body = this.extract(chunks)
          return TlsStep.Complete
        }
      }
      if (this.recLeft === 0) this.hdrLeft = 5
    }
    return TlsStep.NeedMore
  }

  /** Copy the hello body out of its records; a view when it sits in one record of one chunk. */
  private extract (chunks: readonly Buffer[]): Buffer {
    if (this.records === 1) return streamSlice(chunks, 9, 9 + this.hsLen)
    const out = Buffer.allocUnsafe(this.hsLen)
    const r = new ChunkReader(chunks)
    let skipHs = 4
    let o = 0
    while (o < this.hsLen) {
      r.skip(3)
      let rec = (r.u8() << 8) | r.u8()
      const s = Math.min(skipHs, rec)
      r.skip(s)
      skipHs -= s
      rec -= s
      const n = Math.min(rec, this.hsLen - o)
      // Only the last record can hold more than the hello; nothing after it is read.
      r.copy(out, o, n)
      o += n
    }
    return out
  }
}

/**
 * An SSL 2.0-format ClientHello (RFC 6101 Appendix E.2; the 2-byte header
 * form): high bit of byte 0 set, msg_type 1 at byte 2, version 0x0002 or
 * 0x03xx at bytes 3-4. It carries no extensions, so never a name.
 * Returns true/false when decidable from the bytes given, undefined otherwise.
 */
export function looksLikeSslv2Hello (b0: number, b1: number | undefined, b2: number | undefined, b3: number | undefined, b4: number | undefined): boolean | undefined {
  if ((b0 & 0x80) === 0) return false
  if (b1 === undefined) return undefined
  // The record length must at least hold the fixed fields (9 bytes).
  if ((((b0 & 0x7f) << 8) | b1) < 9) return false
  if (b2 === undefined) return undefined
  if (b2 !== 0x01) return false
  if (b3 === undefined) return undefined
  if (b3 !== 0x00 && b3 !== 0x03) return false
  if (b4 === undefined) return undefined
  return b3 === 0x03 || b4 === 0x02
}
