// Datagram framing for UDP flows over a relay connection (protocol v2,
// BIND command CMD_UDP; docs/relay-protocol.md "UDP flows"). Pure: no
// sockets, no timers. Shared by the host (udp-client.ts) and the relay
// (udp-server.ts), so both sides frame and check alike.
//
// frame = length (2 bytes, big-endian) | payload (length bytes)
//
// One frame is one datagram, boundaries kept. A zero-length frame is a
// zero-length datagram (UDP has them). A length above UDP_MAX_PAYLOAD, the
// largest IPv4 UDP payload, is a protocol error: the stream cannot be trusted
// after it, so the connection (the flow) ends.

import { KtError } from '../errors.js'

/** 65,535 − 8 (UDP header) − 20 (IPv4 header): the largest datagram either side may frame. */
export const UDP_MAX_PAYLOAD = 65_507
export const FRAME_HEADER = 2

/** One datagram as a frame (one allocation, one write). */
export function encodeFrame (payload: Buffer): Buffer {
  if (payload.length > UDP_MAX_PAYLOAD) throw new KtError('KT_ERR_RELAY_FRAME', `a datagram of ${payload.length} bytes is over the ${UDP_MAX_PAYLOAD}-byte limit`)
  const out = Buffer.allocUnsafe(FRAME_HEADER + payload.length)
  out.writeUInt16BE(payload.length, 0)
  payload.copy(out, FRAME_HEADER)
  return out
}

/**
 * Incremental decoder: push stream chunks, get whole datagrams back (views
 * into the chunks, not copies, when a frame lies within one chunk). Holds at
 * most one partial frame (≤ 65,509 bytes). An oversize length sets `error`
 * (KT_ERR_RELAY_FRAME): push returns the datagrams before it, and nothing
 * ever after; the caller checks `error` after each push and ends the flow.
 */
export class FrameDecoder {
  private rest: Buffer | undefined
  /** Set at the first oversize length; the stream is not trusted after it. */
  error: KtError | undefined

  /** Datagrams completed by this chunk, in order (those before an oversize length, if one came). */
  push (chunk: Buffer): Buffer[] {
    if (this.error !== undefined) return []
    let buf = chunk
    if (this.rest !== undefined) { buf = Buffer.concat([this.rest, chunk]); this.rest = undefined }
    const out: Buffer[] = []
    let at = 0
    while (buf.length - at >= FRAME_HEADER) {
      const n = buf.readUInt16BE(at)
      if (n > UDP_MAX_PAYLOAD) {
        this.error = new KtError('KT_ERR_RELAY_FRAME', `a frame announces ${n} bytes, over the ${UDP_MAX_PAYLOAD}-byte datagram limit`)
        return out
      }
      if (buf.length - at < FRAME_HEADER + n) break
      out.push(buf.subarray(at + FRAME_HEADER, at + FRAME_HEADER + n))
      at += FRAME_HEADER + n
    }
    if (at < buf.length) this.rest = buf.subarray(at)
    return out
  }

  /** Bytes of an unfinished frame held (a stream that ends with some is truncated). */
  get partial (): number {
    return this.rest?.length ?? 0
  }
}
