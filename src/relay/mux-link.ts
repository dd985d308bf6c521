// What both ends of a multiplexed relay connection share (the "carrier"):
// frame decoding, writes coalesced per turn of the event loop (cork, uncork
// in setImmediate, after every I/O callback of the poll phase, so the frames
// of all the streams that had bytes in that turn leave in one writev), per-stream credit (a sender may
// have MUX_WINDOW_BYTES in flight per stream; the receiver returns credit as
// it passes bytes on), and the carrier's own backpressure (write() false:
// every producer that sends next is paused until 'drain'). The relay's side
// is mux-server.ts, the host's mux-client.ts. Handlers are module-level
// functions with state in a symbol slot: no closure per chunk or frame.

import type { Socket } from 'node:net'
import type { KtError } from '../errors.js'
import { Status } from './protocol.js'
import {
  MuxDecoder, muxHeader, muxRst, muxWindow, writeHeader, type MuxSink,
  MUX_OPEN, MUX_DATA, MUX_FIN, MUX_RST, MUX_WINDOW, MUX_DATA_MAX, MUX_WINDOW_BYTES, MUX_HEADER_LEN,
} from './mux-frame.js'

/** Why a stream was reset for breaking its rules (and the addon's, kt_mux.c). */
export const MUX_RESET_TEXT = {
  dataAfterFin: 'DATA after FIN',
  dataOverWindow: 'DATA over the stream\'s window',
  windowOverWindow: 'WINDOW over the stream\'s window',
} as const

/** Credit is returned once this much was passed on (fewer WINDOW frames for small exchanges). */
const GRANT_AT = MUX_WINDOW_BYTES / 4
/** DATA up to this size goes out as one buffer with its header (copied); larger, as two writes. */
const SMALL_FRAME = 8 * 1024

/** One stream's flow-control state, on either side. */
export interface MuxStreamState {
  readonly id: number
  /** Bytes this side may still send before the peer's next WINDOW. */
  credit: number
  /** Bytes read from the producer that wait for credit. */
  held: Buffer | undefined
  /** The producer is paused (no credit, or the carrier is full). */
  paused: boolean
  /** Bytes received and passed on, not yet credited back. */
  unacked: number
  /** Bytes received and not yet credited back, passed on or not: never over the window. */
  outstanding: number
  finSent: boolean
  /** The producer ended while bytes were held: FIN goes after them. */
  finHeld: boolean
  finRecv: boolean
  /** Reset, or finished and removed. */
  gone: boolean
}

export function newStreamState (id: number): MuxStreamState {
  return { id, credit: MUX_WINDOW_BYTES, held: undefined, paused: false, unacked: 0, outstanding: 0, finSent: false, finHeld: false, finRecv: false, gone: false }
}

const kLink = Symbol('kt.mux.link')
interface CarrierSocket extends Socket { [kLink]: MuxLink<MuxStreamState> }

function uncork (link: MuxLink<MuxStreamState>): void {
  if (link.holdOpen) {
    // OPENs went out this turn on a busy carrier: hold the frames one turn
    // longer, through the next poll, so the new clients' first bytes (already
    // on their way when they were accepted) leave with their OPENs in one
    // write. relay-ab, Mac-like, 50 clients with Connection: close: 3.03k
    // against 2.54k new connections a second, the forwarder's CPU per
    // connection 0.044 against 0.100 ms. Not for a lone stream: there the
    // extra turn cost its first byte 40-90 µs (paired turns).
    link.holdOpen = false
    setImmediate(uncork, link)
    return
  }
  link.corked = false
  link.sock.uncork()
}

function onCarrierData (this: CarrierSocket, chunk: Buffer): void {
  const link = this[kLink]
  link.bytesIn += chunk.length
  const err = link.dec.push(chunk, link)
  if (err !== undefined) link.lost(err, true)
}

function onCarrierDrain (this: CarrierSocket): void {
  this[kLink].drained()
}

export abstract class MuxLink<S extends MuxStreamState> implements MuxSink {
  readonly sock: Socket
  readonly streams = new Map<number, S>()
  readonly dec = new MuxDecoder()
  corked = false
  /** OPENs are queued on a busy carrier: the uncork waits one more turn (uncork above). */
  holdOpen = false
  /** The carrier's write buffer is over its high-water mark. */
  blocked = false
  private stalled: S[] = []
  bytesIn = 0
  dead = false

  constructor (sock: Socket) {
    this.sock = sock
    ;(sock as CarrierSocket)[kLink] = this as unknown as MuxLink<MuxStreamState>
    sock.setNoDelay(true)
    sock.on('data', onCarrierData)
    sock.on('drain', onCarrierDrain)
  }

  /**
   * Queue bytes on the carrier, coalesced with the rest of this tick's frames.
   * `now`: a lone frame need not wait for the turn's end, so it starts no
   * cork (it still joins one already started this turn).
   */
  write (buf: Buffer, now = false): void {
    if (this.dead) return
    if (!this.corked && !now) {
      this.corked = true
      this.sock.cork()
      setImmediate(uncork, this)
    }
    if (!this.sock.write(buf)) this.blocked = true
  }

  /**
   * Few streams are open: a small DATA frame leaves at once (write's `now`)
   * rather than at the turn's end, since there is little to coalesce it
   * with. The relay's side keeps coalescing (false).
   */
  get quiet (): boolean { return false }

  /**
   * Send a producer's chunk as DATA frames within the stream's credit. False:
   * pause the producer (credit ran out and the rest is held, or the carrier
   * is full); resumeProducer() says when to go on.
   */
  sendData (st: S, chunk: Buffer): boolean {
    if (st.gone || this.dead) return true // discarded: the stream is reset
    if (st.held !== undefined) { st.held = Buffer.concat([st.held, chunk]); st.paused = true; return false }
    let off = 0
    const n = chunk.length
    while (off < n && st.credit > 0) {
      const len = Math.min(n - off, st.credit, MUX_DATA_MAX)
      if (len <= SMALL_FRAME) {
        // One buffer, header and bytes: a copy of a few KiB costs less than a second write.
        const f = writeHeader(Buffer.allocUnsafe(MUX_HEADER_LEN + len), st.id, MUX_DATA, len)
        chunk.copy(f, MUX_HEADER_LEN, off, off + len)
        this.write(f, this.quiet)
      } else {
        this.write(muxHeader(st.id, MUX_DATA, len))
        this.write(off === 0 && len === n ? chunk : chunk.subarray(off, off + len))
      }
      st.credit -= len
      off += len
    }
    if (off < n) {
      st.held = off === 0 ? chunk : chunk.subarray(off)
      st.paused = true
      return false
    }
    if (this.blocked) {
      st.paused = true
      this.stalled.push(st)
      return false
    }
    return true
  }

  sendFin (st: S): void {
    if (st.gone || st.finSent) return
    if (st.held !== undefined) { st.finHeld = true; return }
    st.finSent = true
    this.write(muxHeader(st.id, MUX_FIN, 0))
  }

  sendRst (st: S, status: number): void {
    this.write(muxRst(st.id, status))
  }

  /** `n` received bytes were passed on; return credit in batches, or all now with `force`. */
  grant (st: S, n: number, force = false): void {
    st.unacked += n
    if (st.gone || st.unacked === 0 || (!force && st.unacked < GRANT_AT)) return
    this.write(muxWindow(st.id, st.unacked))
    st.outstanding -= st.unacked
    st.unacked = 0
  }

  drained (): void {
    this.blocked = false
    const s = this.stalled
    if (s.length === 0) return
    this.stalled = []
    for (const st of s) {
      if (st.gone || st.held !== undefined || !st.paused) continue
      st.paused = false
      this.resumeProducer(st)
      if (this.blocked) break
    }
    // Those not resumed (the carrier filled again) wait for the next drain.
    for (const st of s) if (st.paused && st.held === undefined && !st.gone && !this.stalled.includes(st)) this.stalled.push(st)
  }

  onFrame (id: number, type: number, payload: Buffer): void {
    if (type === MUX_OPEN) { this.onOpen(id, payload); return }
    const st = this.streams.get(id)
    // Frames for a stream already reset or finished cross its RST in flight: dropped.
    if (st === undefined || st.gone) return
    switch (type) {
      case MUX_DATA:
        if (st.finRecv) { this.protocolReset(st, MUX_RESET_TEXT.dataAfterFin); return }
        st.outstanding += payload.length
        if (st.outstanding > MUX_WINDOW_BYTES) { this.protocolReset(st, MUX_RESET_TEXT.dataOverWindow); return }
        this.deliver(st, payload)
        return
      case MUX_FIN:
        if (st.finRecv) return
        st.finRecv = true
        this.onFin(st)
        return
      case MUX_RST:
        this.onRst(st, payload[0] as number)
        return
      case MUX_WINDOW: {
        st.credit += payload.readUInt32BE(0)
        if (st.credit > MUX_WINDOW_BYTES) { this.protocolReset(st, MUX_RESET_TEXT.windowOverWindow); return }
        const h = st.held
        if (h !== undefined) {
          st.held = undefined
          const more = this.sendData(st, h)
          if (st.finHeld && st.held === undefined) { st.finHeld = false; this.sendFin(st); this.finFlushed(st) }
          if (!more) return
        }
        if (st.paused) { st.paused = false; this.resumeProducer(st) }
      }
    }
  }

  /** A peer that broke the stream's rules: that stream is reset both ways; the others go on. */
  private protocolReset (st: S, why: string): void {
    this.sendRst(st, Status.HEADER)
    this.onRst(st, Status.HEADER, why)
  }

  /** The carrier closed or broke: every stream on it is reset. */
  lost (err: KtError | Error | undefined, destroy: boolean): void {
    if (this.dead) return
    this.dead = true
    this.sock.removeListener('data', onCarrierData)
    if (destroy) this.sock.destroy()
    this.onLost(err)
  }

  /** A FIN held behind bytes waiting for credit went out. */
  finFlushed (_st: S): void {}

  abstract onOpen (id: number, payload: Buffer): void
  abstract deliver (st: S, payload: Buffer): void
  abstract onFin (st: S): void
  /** The peer reset the stream (status from its RST), or this side found it broken (`why`). */
  abstract onRst (st: S, status: number, why?: string): void
  abstract resumeProducer (st: S): void
  abstract onLost (err: KtError | Error | undefined): void
}
