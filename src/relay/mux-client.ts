// The host's side of multiplexed relay connections: a few long-lived,
// authenticated carriers through the engine's forwarder (never a connection
// to a backend), each carrying many streams. A dial is an OPEN frame on the
// least loaded carrier, written at once (a server that speaks first is
// dialled at accept, not on the client's first bytes), and the data plane
// gets a MuxStream: a Duplex it splices like a socket. A lost carrier resets
// its streams, as any connection whose path died, and is reopened with
// backoff; new streams go to the live carriers meanwhile, or, when none is
// live, the caller falls back to the pool. See docs/relay-protocol.md.

import { Duplex } from 'node:stream'
import type { Socket } from 'node:net'
import { directSpliceData } from '../dataplane/splice.js'
import { KtError } from '../errors.js'
import { CMD_MUX, INFO_MUX, Status, statusErrorCode, statusName, encodeConnect, type Address } from './protocol.js'
import { writeHeader, MUX_OPEN, MUX_HEADER_LEN } from './mux-frame.js'
import { MuxLink, newStreamState, type MuxStreamState } from './mux-link.js'
import type { RelayLogger } from './log.js'

export type RelayTransport = 'auto' | 'mux' | 'pool'
export const RELAY_TRANSPORTS: readonly RelayTransport[] = ['auto', 'mux', 'pool']
/**
 * What `auto` (the default) does (docs/benchmarks.md, "Relay mode"): each
 * transport where it wins. A pooled connection per client is spliced
 * natively by the relay, so bulk transfers (and, a little, keep-alive
 * requests) cost the least there; but each one is a new connection through
 * the engine's forwarder, and a stream over a mux carrier costs the host, the
 * forwarder and the relay 40-50% less CPU per new connection and reaches its
 * first byte sooner in the Mac-like placement. So, per destination: the pool
 * while new connections to it arrive slowly; streams over mux carriers
 * (opened the first time) once its rate of new dials, decayed over about a
 * second, reaches AUTO_MUX_RATE a second; the pool again below
 * AUTO_POOL_RATE. A destination one of whose connections moved
 * AUTO_BULK_BYTES or more stays on the pool for AUTO_BULK_HOLD_MS after it
 * closed: a transfer that big wants a spliced connection of its own. Per
 * destination, so one Service's many short connections do not move a
 * database's or a bulk transfer's few long ones onto streams. A connection
 * keeps the transport it was dialled on.
 */
export const AUTO_MUX_RATE = 20
export const AUTO_POOL_RATE = 10
/**
 * The same rule against a relay whose addon accepts (INFO_LANE in its
 * answer). A pooled connection then costs the relay no JS: it reaches its
 * first byte sooner than a stream (paired turns, 2.05 against 2.66 ms),
 * costs the Docker VM about what a stream does (0.80 against 0.71 ms of CPU
 * per connection), is spliced natively, and only the host's JS pays more for
 * it (0.67 against 0.42 ms; relay-ab, docs/benchmarks.md). Streams win only
 * where the host's CPU is what limits: from 400 new connections a second to
 * one destination, where the quarter millisecond each saves is a tenth of a
 * core; the pool again below 200.
 */
export const AUTO_MUX_RATE_LANE = 400
export const AUTO_POOL_RATE_LANE = 200
/**
 * Against a relay whose addon also serves the carriers (INFO_MUX_LANE): a
 * stream's frames cost the relay no JS, and the carrier's coalesced writes
 * cost the forwarder less than one connection per client does. In relay-ab's
 * Mac-like rounds (docs/benchmarks.md) streams gave 21.7k keep-alive
 * requests a second against the pool's 13.5k, 3.58k new connections against
 * 2.09k, and their first byte 1.16 against 1.43 ms; only bulk stays the
 * pool's (6.5 against 3.1 Gbit/s, the pure-JS host's framing), which
 * AUTO_BULK_BYTES keeps on the pool. So streams from 5 new connections a
 * second to a destination, the pool again below 2 (a destination taking a
 * few long connections, a database or an iperf3 run, keeps the pool), and
 * the carriers open as soon as the relay says it serves them (client.ts
 * eagerMux), so a burst finds them live.
 */
export const AUTO_MUX_RATE_MUX_LANE = 5
export const AUTO_POOL_RATE_MUX_LANE = 2
export const AUTO_BULK_BYTES = 4 * 1024 * 1024
export const AUTO_BULK_HOLD_MS = 60_000

/** One stream, as the data plane sees it: a socket-like Duplex (allowHalfOpen, paused until spliced). */
export class MuxStream extends Duplex {
  /** Marks a stream that has no file descriptor (the native splicer is not tried). */
  readonly ktMux = true
  readonly st: MuxStreamState
  readonly carrier: HostMux
  /** Bytes this stream carried, both ways (auto's bulk rule). */
  bytesMoved = 0
  private writeCb: ((err?: Error | null) => void) | undefined

  constructor (carrier: HostMux, id: number) {
    super({ allowHalfOpen: true })
    this.carrier = carrier
    this.st = newStreamState(id)
    this.on('data', onOwnData)
    this.pause()
  }

  override _write (chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.bytesMoved += chunk.length
    if (this.carrier.sendData(this.st, chunk)) cb()
    else this.writeCb = cb
  }

  override _final (cb: (err?: Error | null) => void): void {
    this.carrier.sendFin(this.st)
    cb()
  }

  override _read (): void {}

  override _destroy (err: Error | null, cb: (err?: Error | null) => void): void {
    this.carrier.close(this, err)
    const w = this.writeCb
    this.writeCb = undefined
    w?.()
    cb(err)
  }

  /** Called by the carrier when credit or carrier room came back. */
  resumeWriting (): void {
    const w = this.writeCb
    this.writeCb = undefined
    w?.()
  }

  /** Reset both ways: an RST to the relay (the node connection is reset). */
  resetAndDestroy (): this {
    this.destroy()
    return this
  }

  setTimeout (_ms: number, _cb?: () => void): this { return this }
  setNoDelay (_v?: boolean): this { return this }
  setKeepAlive (_v?: boolean, _ms?: number): this { return this }
}

/** Every chunk the data plane took from the stream was passed on: return its credit. */
function onOwnData (this: MuxStream, chunk: Buffer): void {
  this.carrier.grant(this.st, chunk.length)
}

/** Error codes of a stream reset by the relay (its RST's status). */
function resetError (status: number): Error {
  if (status === Status.OK) return Object.assign(new Error('the relay reset the stream (the node reset or closed the connection)'), { code: 'ECONNRESET' })
  return new KtError(statusErrorCode(status), `the relay refused the stream: ${statusName(status)}`)
}

/** Streams open on a carrier from which a new stream's OPEN waits a turn for its first bytes. */
const HOLD_OPEN_FROM = 4

/** One carrier on the host. */
export class HostMux extends MuxLink<MuxStreamState> {
  private nextId = 1
  private readonly handles = new Map<number, MuxStream>()
  private readonly onGone: (m: HostMux, err: Error | undefined) => void
  opened = 0
  /** Chunks handed straight to a splice (deliver); the rest were pushed. */
  directChunks = 0

  constructor (sock: Socket, onGone: (m: HostMux, err: Error | undefined) => void) {
    super(sock)
    this.onGone = onGone
    sock.on('end', () => { this.lost(undefined, true) })
    sock.on('error', (err) => { this.lost(err, true) })
    sock.on('close', () => { this.lost(undefined, false) })
    sock.write(Buffer.from([CMD_MUX, 0]))
    sock.resume()
  }

  get load (): number { return this.handles.size }

  /** As many streams as HOLD_OPEN_FROM or fewer: their OPENs and small DATA frames leave at once. */
  override get quiet (): boolean { return this.handles.size <= HOLD_OPEN_FROM }

  open (dst: Address, source: Address | undefined, proxyV2: boolean): MuxStream {
    const id = this.nextId
    this.nextId = this.nextId >= 0xfffffffe ? 1 : this.nextId + 1
    const s = new MuxStream(this, id)
    this.streams.set(id, s.st)
    this.handles.set(id, s)
    this.opened++
    const bind = encodeConnect(dst, source, proxyV2)
    const f = writeHeader(Buffer.allocUnsafe(MUX_HEADER_LEN + bind.length), id, MUX_OPEN, bind.length)
    bind.copy(f, MUX_HEADER_LEN)
    // Quiet: the OPEN leaves now, so the relay dials the node while this
    // process sets the connection up and reads the client's first bytes.
    // Busy (other streams open): it waits a turn for them (mux-link.ts uncork).
    const quiet = this.quiet
    this.write(f, quiet)
    if (!quiet) this.holdOpen = true
    return s
  }

  /** The stream was destroyed on this side: an RST unless both directions had finished. */
  close (s: MuxStream, _err: Error | null): void {
    const st = s.st
    if (st.gone) return
    if (!(st.finSent && st.finRecv)) this.sendRst(st, Status.OK)
    this.forget(st)
  }

  private forget (st: MuxStreamState): void {
    st.gone = true
    this.streams.delete(st.id)
    this.handles.delete(st.id)
  }

  onOpen (_id: number, _payload: Buffer): void {
    this.lost(new KtError('KT_ERR_RELAY_MUX', 'the relay opened a stream (only the host does)'), true)
  }

  deliver (st: MuxStreamState, payload: Buffer): void {
    const h = this.handles.get(st.id)
    if (h === undefined) return
    h.bytesMoved += payload.length
    // Spliced, flowing, nothing buffered, no reader but the splice and the
    // credit (onOwnData): the chunk goes to the splice without push() and a
    // 'data' event (splice.ts directSpliceData), and its credit as onOwnData would.
    if (payload.length > 0 && h.readableFlowing === true && h.readableLength === 0 && h.listenerCount('data') === 2) {
      const direct = directSpliceData(h)
      if (direct !== undefined) {
        this.directChunks++
        this.grant(st, payload.length)
        direct.call(h, payload)
        return
      }
    }
    h.push(payload)
  }

  onFin (st: MuxStreamState): void {
    this.handles.get(st.id)?.push(null)
  }

  onRst (st: MuxStreamState, status: number, why?: string): void {
    const s = this.handles.get(st.id)
    this.forget(st)
    s?.destroy(why !== undefined ? new KtError('KT_ERR_RELAY_MUX', why) : resetError(status))
  }

  resumeProducer (st: MuxStreamState): void {
    this.handles.get(st.id)?.resumeWriting()
  }

  onLost (err: Error | undefined): void {
    const e = new KtError('KT_ERR_RELAY_MUX', `the multiplexed relay connection was lost${err === undefined ? '' : `: ${(err as NodeJS.ErrnoException).code ?? err.message}`}`)
    for (const s of [...this.handles.values()]) { this.forget(s.st); s.destroy(e) }
    this.onGone(this, err)
  }

  /** Close the carrier: its streams are reset. */
  shutdown (): void {
    this.lost(undefined, true)
  }
}

export interface MuxPoolOptions {
  /** Carriers kept open (default 2). */
  readonly carriers?: number
  /** Connect + AUTH with its OK, resolving the socket and the relay's info bits. */
  readonly handshake: () => Promise<{ sock: Socket, info: number | undefined }>
  readonly logger: RelayLogger
  readonly where: string
}

export interface MuxPoolStats {
  /** live: carriers up; unsupported: the relay has no INFO_MUX (the pool serves). */
  readonly state: 'connecting' | 'live' | 'down' | 'unsupported'
  readonly carriers: number
  readonly streams: number
  readonly opened: number
  readonly lost: number
  readonly lastError?: string
}

/** The carriers of one relay: kept at `carriers`, reopened with backoff. */
export class MuxPool {
  private readonly want: number
  private readonly live: HostMux[] = []
  private connecting = 0
  private failures = 0
  private retryTimer: NodeJS.Timeout | undefined
  private closed = false
  unsupported = false
  private opened = 0
  private lostCount = 0
  private lastError: string | undefined
  private rr = 0

  constructor (private readonly o: MuxPoolOptions) {
    this.want = o.carriers ?? 2
    this.fill()
  }

  /** A stream on a live carrier, or undefined (none is live: the caller uses the pool). */
  open (dst: Address, source: Address | undefined, proxyV2: boolean): MuxStream | undefined {
    const n = this.live.length
    if (n === 0) return undefined
    let best = this.live[this.rr++ % n] as HostMux
    for (const c of this.live) if (c.load < best.load) best = c
    this.opened++
    return best.open(dst, source, proxyV2)
  }

  /** Resolves once a carrier is live (true), or false at the deadline, or when the relay takes none. */
  async ready (timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs
    while (this.live.length === 0 && !this.unsupported && !this.closed && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 10))
    return this.live.length > 0
  }

  stats (): MuxPoolStats {
    let streams = 0
    for (const c of this.live) streams += c.load
    const state = this.unsupported ? 'unsupported' : this.live.length > 0 ? 'live' : this.failures > 0 ? 'down' : 'connecting'
    const s: { -readonly [K in keyof MuxPoolStats]: MuxPoolStats[K] } = { state, carriers: this.live.length, streams, opened: this.opened, lost: this.lostCount }
    if (this.lastError !== undefined) s.lastError = this.lastError
    return s
  }

  close (): void {
    this.closed = true
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer)
    for (const c of this.live.splice(0)) c.shutdown()
  }

  private fill (): void {
    if (this.closed || this.unsupported || this.retryTimer !== undefined) return
    while (this.live.length + this.connecting < this.want) {
      this.connecting++
      this.o.handshake().then(({ sock, info }) => {
        this.connecting--
        if (this.closed) { sock.destroy(); return }
        if (info === undefined || (info & INFO_MUX) === 0) {
          // An older relay image: the pool serves every dial (`up` replaces such a relay).
          this.unsupported = true
          sock.destroy()
          this.o.logger.info({ relay: this.o.where }, 'the relay takes no multiplexed connections; using the pool')
          return
        }
        if (this.failures > 0) this.o.logger.info({ relay: this.o.where }, 'relay mux connection open again')
        this.failures = 0
        this.live.push(new HostMux(sock, this.gone))
      }, (err: Error) => {
        this.connecting--
        this.failed(err)
      })
    }
  }

  private readonly gone = (m: HostMux, err: Error | undefined): void => {
    const i = this.live.indexOf(m)
    if (i < 0) return
    this.live.splice(i, 1)
    this.lostCount++
    if (this.closed) return
    this.failed(err ?? new KtError('KT_ERR_RELAY_MUX', 'the relay closed a multiplexed connection'))
  }

  private failed (err: Error): void {
    this.lastError = `${(err as KtError).code ?? 'KT_ERR_RELAY_DOWN'}: ${err.message}`
    if (this.failures++ === 0) this.o.logger.warn({ relay: this.o.where, err }, 'relay mux connection failed or lost')
    if (this.closed || this.retryTimer !== undefined) return
    const delay = Math.min(5000, 100 * 2 ** Math.min(this.failures, 6))
    this.retryTimer = setTimeout(() => { this.retryTimer = undefined; this.fill() }, delay)
    this.retryTimer.unref()
  }
}
