// The relay's side of a multiplexed connection (BIND command CMD_MUX): per
// OPEN, the allowlist check and a dial with the relay's deadline, exactly as
// for a BIND; then the stream's frames ↔ the node socket. A refused or failed
// dial is an RST with its status (the host resets its client: nothing of the
// relay's reaches a client as data). A FIN is forwarded as a FIN, an RST as a
// TCP reset and a node's reset as an RST. See docs/relay-protocol.md.

import { connect, type Socket } from 'node:net'
import { denyText, type Allowlist } from './allow.js'
import { Status, statusName, proxyV2Header, type ConnectRequest } from './protocol.js'
import { parseOpen } from './mux-frame.js'
import { MuxLink, newStreamState, type MuxStreamState } from './mux-link.js'
import type { RelayLogger } from './log.js'
import type { SpliceResult } from './splice.js'

/** Why a carrier broke on a second OPEN for a stream (and the addon's, kt_mux.c). */
export function openForOpenText (id: number): string {
  return `OPEN for stream ${id}, which is open`
}

/** A stream refused at the cap, or while the relay closes (and the addon's, kt_mux.c). */
export const MUX_BUSY_TEXT = 'relay at its connection cap, or closing'

/** The parts of the relay's context a carrier uses (server.ts passes its own). */
export interface MuxServerCtx {
  readonly allow: Allowlist
  readonly connectTimeoutMs: number
  readonly maxConnections: number
  readonly log: RelayLogger
  readonly counters: {
    refusedHeader: number, refusedDenied: number, refusedBusy: number,
    dialed: number, dialFailed: number, dialTimedOut: number, spliced: number, active: number,
    bytesToUpstream: number, bytesFromUpstream: number, muxStreams?: number,
  }
  readonly closing: boolean
}

interface RelayStream extends MuxStreamState {
  readonly link: RelayMux
  req: ConnectRequest | undefined
  up: Socket | undefined
  dialing: boolean
  timer: NodeJS.Timeout | undefined
  /** Bytes that came while dialing, written once connected. */
  early: Buffer[] | undefined
  /** Bytes whose credit waits for the node socket's 'drain'. */
  owed: number
  /** The node socket closed cleanly while the stream's last bytes waited for credit. */
  upClosed: boolean
}

const kStream = Symbol('kt.mux.stream')
interface UpSocket extends Socket { [kStream]: RelayStream }

function onDialConnect (this: UpSocket): void {
  const st = this[kStream]
  st.link.connected(st)
}
function onDialError (this: UpSocket, err: NodeJS.ErrnoException): void {
  const st = this[kStream]
  st.link.dialFailed(st, Status.UNREACHABLE, err.code ?? err.message)
}
function onDialTimeout (st: RelayStream): void {
  st.timer = undefined
  st.link.dialFailed(st, Status.TIMEOUT, `connect timed out after ${st.link.ctx.connectTimeoutMs} ms`)
}
function onUpData (this: UpSocket, chunk: Buffer): void {
  const st = this[kStream]
  st.link.bytesDown += chunk.length
  st.link.ctx.counters.bytesFromUpstream += chunk.length
  if (!st.link.sendData(st, chunk)) this.pause()
}
function onUpDrain (this: UpSocket): void {
  const st = this[kStream]
  const n = st.owed
  st.owed = 0
  st.link.grant(st, n, true)
}
function onUpEnd (this: UpSocket): void {
  const st = this[kStream]
  st.link.sendFin(st)
}
function onUpError (this: UpSocket): void {
  // 'close' follows; it decides between a clean end and a reset.
}
function onUpClose (this: UpSocket): void {
  const st = this[kStream]
  if (st.gone) return
  const link = st.link
  // Both directions finished: a clean end. Anything else: the node reset or
  // vanished, and the host's client is reset too.
  if (st.finHeld && st.finRecv) { st.upClosed = true; return } // its FIN goes after the held bytes: finFlushed
  if (!(st.finSent && st.finRecv)) link.sendRst(st, Status.OK)
  link.remove(st)
}

/** A carrier on the relay: many streams, each dialled and spliced as a BIND would be. */
export class RelayMux extends MuxLink<RelayStream> {
  readonly ctx: MuxServerCtx
  private readonly remote: string
  private readonly done: (r: SpliceResult) => void
  bytesUp = 0
  bytesDown = 0
  opened = 0

  constructor (ctx: MuxServerCtx, sock: Socket, remote: string, leftover: Buffer, done: (r: SpliceResult) => void) {
    super(sock)
    this.ctx = ctx
    this.remote = remote
    this.done = done
    sock.on('end', onCarrierEnd)
    sock.on('error', onCarrierError)
    sock.on('close', onCarrierClose)
    ;(sock as Socket & { [kCarrier]: RelayMux })[kCarrier] = this
    if (leftover.length > 0) {
      const err = this.dec.push(leftover, this)
      if (err !== undefined) this.lost(err, true)
    }
    sock.resume()
  }

  onOpen (id: number, payload: Buffer): void {
    const { ctx } = this
    const c = ctx.counters
    if (this.streams.has(id)) { this.lost(new Error(openForOpenText(id)), true); return }
    const st: RelayStream = { ...newStreamState(id), link: this, req: undefined, up: undefined, dialing: true, timer: undefined, early: undefined, owed: 0, upClosed: false }
    const req = parseOpen(payload)
    if (typeof req === 'string') { c.refusedHeader++; this.refuse(st, Status.HEADER, req); return }
    st.req = req
    if (ctx.closing || c.active >= ctx.maxConnections) { c.refusedBusy++; this.refuse(st, Status.BUSY, MUX_BUSY_TEXT); return }
    const deny = ctx.allow.check(req.destination.address, req.destination.port)
    if (deny !== null) { c.refusedDenied++; this.refuse(st, Status.DENIED, denyText(deny)); return }
    c.dialed++
    c.active++
    this.opened++
    this.streams.set(id, st)
    const up = connect({ host: req.destination.address, port: req.destination.port, allowHalfOpen: true, noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000 }) as UpSocket
    up[kStream] = st
    st.up = up
    up.pause()
    up.once('connect', onDialConnect)
    up.once('error', onDialError)
    st.timer = setTimeout(onDialTimeout, ctx.connectTimeoutMs, st)
  }

  private refuse (st: RelayStream, status: number, why: string): void {
    this.sendRst(st, status)
    this.logStream(st, statusName(status), why)
  }

  connected (st: RelayStream): void {
    if (st.timer !== undefined) { clearTimeout(st.timer); st.timer = undefined }
    const up = st.up as UpSocket
    if (st.gone) { up.destroy(); return }
    up.removeListener('error', onDialError)
    st.dialing = false
    this.ctx.counters.spliced++
    up.on('data', onUpData)
    up.on('drain', onUpDrain)
    up.on('end', onUpEnd)
    up.on('error', onUpError)
    up.on('close', onUpClose)
    const req = st.req as ConnectRequest
    if (req.proxyV2 && req.source !== undefined) up.write(proxyV2Header(req.source, req.destination))
    const early = st.early
    st.early = undefined
    if (early !== undefined) for (const b of early) this.deliver(st, b)
    if (st.finRecv) up.end()
    up.resume()
  }

  dialFailed (st: RelayStream, status: number, why: string): void {
    if (!st.dialing || st.gone) return
    const c = this.ctx.counters
    if (status === Status.TIMEOUT) c.dialTimedOut++
    else c.dialFailed++
    if (st.timer !== undefined) { clearTimeout(st.timer); st.timer = undefined }
    st.up?.on('error', noop)
    st.up?.destroy()
    this.sendRst(st, status)
    this.remove(st)
    this.logStream(st, statusName(status), why)
  }

  deliver (st: RelayStream, payload: Buffer): void {
    if (st.dialing) { (st.early ??= []).push(payload); return }
    const up = st.up as Socket
    this.bytesUp += payload.length
    this.ctx.counters.bytesToUpstream += payload.length
    if (up.write(payload)) this.grant(st, payload.length)
    else st.owed += payload.length
  }

  onFin (st: RelayStream): void {
    if (!st.dialing) st.up?.end()
  }

  onRst (st: RelayStream, _status: number, why?: string): void {
    if (st.timer !== undefined) { clearTimeout(st.timer); st.timer = undefined }
    const up = st.up
    this.remove(st)
    if (up !== undefined) { up.on('error', noop); if (st.dialing) up.destroy(); else up.resetAndDestroy() }
    if (why !== undefined) this.logStream(st, 'header', why)
  }

  override finFlushed (st: RelayStream): void {
    if (st.upClosed) this.remove(st)
  }

  resumeProducer (st: RelayStream): void {
    st.up?.resume()
  }

  remove (st: RelayStream): void {
    if (st.gone) return
    st.gone = true
    this.streams.delete(st.id)
    this.ctx.counters.active--
  }

  onLost (err: Error | undefined): void {
    for (const st of [...this.streams.values()]) this.onRst(st, Status.OK)
    if (err !== undefined) this.ctx.log.warn({ client: this.remote, detail: err.message }, 'relay mux connection broken')
  }

  finish (): void {
    this.done({ aToB: this.bytesUp, bToA: this.bytesDown, end: 'closed' })
  }

  /** Refusals and failed dials only: a stream that worked is not worth a line each. */
  private logStream (st: RelayStream, outcome: string, why: string): void {
    const rec: Record<string, unknown> = { client: this.remote, stream: st.id, outcome, detail: why }
    if (st.req !== undefined) rec.dst = `${st.req.destination.address}:${st.req.destination.port}`
    this.ctx.log.warn(rec, 'relay stream refused or failed')
  }
}

const kCarrier = Symbol('kt.mux.carrier')
interface CarrierSock extends Socket { [kCarrier]: RelayMux }

function onCarrierEnd (this: CarrierSock): void {
  // The host closed the carrier: its streams are gone with it.
  this[kCarrier].lost(undefined, false)
  this.end()
}
function onCarrierError (this: CarrierSock, err: Error): void {
  this[kCarrier].lost(err, true)
}
function onCarrierClose (this: CarrierSock): void {
  const m = this[kCarrier]
  m.lost(undefined, false)
  m.finish()
}

function noop (): void {}

