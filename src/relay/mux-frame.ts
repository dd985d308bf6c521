// Frames of a multiplexed relay connection (BIND command CMD_MUX,
// docs/relay-protocol.md "Multiplexed streams"). Pure: an encoder and an
// incremental decoder over Buffers; no sockets, no timers.
//
//   frame = stream id (4) | type (1) | length (3) | payload (length)
//
//   OPEN   (host → relay) payload: a TCP BIND (command 1, flags SOURCE /
//          PROXY_V2, destination [, source]); the relay dials it.
//   DATA   (both ways)    payload: the stream's bytes; counts against the
//          receiver's window.
//   FIN    (both ways)    no payload: the sender finished sending (half-close).
//   RST    (both ways)    payload: one status byte (protocol.ts Status); the
//          stream is gone both ways.
//   WINDOW (both ways)    payload: credit (4), bytes the receiver has passed on.

import { KtError } from '../errors.js'
import { parseConnect, type ConnectRequest } from './protocol.js'

export const MUX_HEADER_LEN = 8
export const MUX_OPEN = 1
export const MUX_DATA = 2
export const MUX_FIN = 3
export const MUX_RST = 4
export const MUX_WINDOW = 5
/** Bytes a sender may have in flight per stream and direction before a WINDOW. */
export const MUX_WINDOW_BYTES = 256 * 1024
/** The largest DATA payload a sender writes; larger chunks are split. */
export const MUX_DATA_MAX = 64 * 1024
/** The largest payload a receiver accepts (any type). */
export const MUX_PAYLOAD_MAX = MUX_DATA_MAX
/** Stream ids are 1..2^32-1; 0 is never a stream. */
export const MUX_ID_MAX = 0xffffffff

const TYPE_NAMES = ['?', 'OPEN', 'DATA', 'FIN', 'RST', 'WINDOW']

export function muxTypeName (t: number): string {
  return TYPE_NAMES[t] ?? `unknown(${t})`
}

/** id(4) | type(1) | len(3), into the first 8 bytes of `b` (len < 2^24, so its top byte is the type's). */
export function writeHeader (b: Buffer, id: number, type: number, len: number): Buffer {
  b.writeUInt32BE(id, 0)
  b.writeUInt32BE(len, 4)
  b[4] = type
  return b
}

/** A frame header, 8 bytes; the payload is written after it (no copy). */
export function muxHeader (id: number, type: number, len: number): Buffer {
  return writeHeader(Buffer.allocUnsafe(MUX_HEADER_LEN), id, type, len)
}

export function muxRst (id: number, status: number): Buffer {
  const b = writeHeader(Buffer.allocUnsafe(MUX_HEADER_LEN + 1), id, MUX_RST, 1)
  b[8] = status
  return b
}

export function muxWindow (id: number, credit: number): Buffer {
  const b = writeHeader(Buffer.allocUnsafe(MUX_HEADER_LEN + 4), id, MUX_WINDOW, 4)
  b.writeUInt32BE(credit, 8)
  return b
}

/** Whoever receives the frames: one object, its methods called per frame (no closure per frame). */
export interface MuxSink {
  onFrame (id: number, type: number, payload: Buffer): void
}

/**
 * Incremental decoder. push() hands every complete frame to the sink, in
 * order, and keeps a partial one for the next chunk. A frame that cannot be
 * part of this protocol (stream id 0, an unknown type, a length over
 * MUX_PAYLOAD_MAX or wrong for its type) makes the decoder fail: frames
 * before it were delivered, `error` is set (KT_ERR_RELAY_MUX) and every later
 * push is ignored, because a byte stream cannot be resynchronised.
 */
export class MuxDecoder {
  private buf: Buffer | undefined
  /** Inside a DATA frame whose payload is still arriving: its stream and the bytes left. */
  private dataId = 0
  private dataLeft = 0
  error: KtError | undefined

  push (chunk: Buffer, sink: MuxSink): KtError | undefined {
    if (this.error !== undefined) return this.error
    let b = chunk
    let at = 0
    const n0 = b.length
    if (this.dataLeft > 0) {
      // The rest of a DATA frame: its bytes are passed on as they come (no copy to reassemble it).
      const take = Math.min(this.dataLeft, n0)
      this.dataLeft -= take
      at = take
      sink.onFrame(this.dataId, MUX_DATA, take === n0 ? b : b.subarray(0, take))
      if (at === n0) return undefined
    } else if (this.buf !== undefined) {
      b = Buffer.concat([this.buf, chunk])
      this.buf = undefined
    }
    const n = b.length
    while (n - at >= MUX_HEADER_LEN) {
      const id = b.readUInt32BE(at)
      const type = b[at + 4] as number
      const len = b.readUInt32BE(at + 4) & 0xffffff
      const why = checkHeader(id, type, len)
      if (why !== undefined) {
        this.error = new KtError('KT_ERR_RELAY_MUX', `multiplexed relay frame: ${why}`)
        return this.error
      }
      const start = at + MUX_HEADER_LEN
      if (n - start < len) {
        if (type !== MUX_DATA || n === start) break
        // A DATA frame cut by the read: pass on what came, the rest follows in the next chunks.
        this.dataId = id
        this.dataLeft = len - (n - start)
        at = n
        sink.onFrame(id, MUX_DATA, b.subarray(start))
        break
      }
      at = start + len
      sink.onFrame(id, type, b.subarray(start, at))
    }
    if (at < n) this.buf = at === 0 ? b : b.subarray(at)
    return undefined
  }

  /** Bytes held of a frame not yet complete (a DATA frame's are passed on as they come). */
  get pending (): number { return this.buf?.length ?? 0 }
}

/** Why a frame header cannot be this protocol's, or undefined (the addon's decoder sends the fields, JS words them). */
export function checkHeader (id: number, type: number, len: number): string | undefined {
  if (id === 0) return 'stream id 0'
  switch (type) {
    case MUX_OPEN: case MUX_DATA:
      return len > MUX_PAYLOAD_MAX ? `${muxTypeName(type)} of ${len} bytes, over the ${MUX_PAYLOAD_MAX}-byte limit` : undefined
    case MUX_FIN: return len === 0 ? undefined : `FIN with ${len} bytes`
    case MUX_RST: return len === 1 ? undefined : `RST with ${len} bytes (1 expected)`
    case MUX_WINDOW: return len === 4 ? undefined : `WINDOW with ${len} bytes (4 expected)`
    default: return `unknown frame type ${type}`
  }
}

/**
 * An OPEN's payload: a TCP BIND (command 1), nothing after it, without
 * ANSWER (a stream's refusal is an RST with the status). A string says why not.
 * `length`: the whole payload's, when `payload` holds only its first bytes
 * (the addon sends at most 64 of a malformed OPEN).
 */
export function parseOpen (payload: Buffer, length = payload.length): ConnectRequest | string {
  const r = parseConnect(payload)
  if (r.kind === 'need') return length > payload.length ? `OPEN of ${length} bytes` : 'OPEN truncated'
  if (r.kind === 'bad') return r.why
  if (r.value.udp) return 'OPEN for a UDP flow'
  if (r.value.answer) return 'OPEN with ANSWER'
  if (r.used !== length) return `OPEN with ${length - r.used} bytes after its BIND`
  return r.value
}
