// The host side of the relay: a Dialer whose sockets go host → published port
// → relay container → nodeIP:nodePort, speaking protocol v2
// (docs/relay-protocol.md).
//
// A dial costs no round trip. On a warm connection the host writes BIND and
// returns the socket at once: the data plane's first write carries the
// client's bytes right behind it. Without one, it connects and writes
// AUTH + BIND, again without waiting. The relay answers only when asked;
// a refusal is a TCP reset, which the data plane passes to the client as it
// would a backend's.
//
// Warm connections: TCP connected, AUTH sent with ACK, the relay's OK
// received, no destination yet, so no backend sees them. Why wait for the
// OK there: a Docker published port is answered by the engine's port
// forwarder (docker-proxy, vpnkit, gvproxy, rootlessport), which accepts the
// TCP connection even when no relay listens behind it. The OK proves the
// whole path up to the relay process (and reports its data path); it costs
// nothing on a client's critical path because the pool fills in the
// background. The pool is sized from the recent rate of new dials.
//
// Over 500 lines: the dialer and its warm pool share each connection's
// handshake state; the pool's sizing reads the dialer's rate.

import { connect, isIP, type Socket } from 'node:net'
import { KtError, InvalidArgumentError } from '../errors.js'
import type { Registry, Counter } from '../observe/metrics.js'
import { encodeAuth, encodeConnect, statusErrorCode, statusName, Status, REPLY_LEN, VERSION, TOKEN_MIN, TOKEN_MAX, INFO_NATIVE, INFO_UDP, INFO_LANE, INFO_MUX_LANE, type Address } from './protocol.js'
import { openUdpFlow, type DatagramChannel, type DatagramHandlers } from './udp-client.js'
import { forbiddenReason } from './allow.js'
import { onFirstSplicedRead } from '../dataplane/splice.js'
import { silentRelayLogger, type RelayLogger } from './log.js'
import { MuxPool, type MuxStream, AUTO_MUX_RATE, AUTO_POOL_RATE, AUTO_MUX_RATE_LANE, AUTO_POOL_RATE_LANE, AUTO_MUX_RATE_MUX_LANE, AUTO_POOL_RATE_MUX_LANE, AUTO_BULK_BYTES, AUTO_BULK_HOLD_MS, type MuxPoolStats, type RelayTransport } from './mux-client.js'

// Structurally the same as src/dataplane/dialer.ts, so a RelayDialer can be
// registered there without either module importing the other.
export interface DialRequest {
  host: string
  port: number
  timeoutMs: number
  source?: { address: string, port: number }
}
export interface Dialer {
  dial (req: DialRequest): Promise<Socket>
}

export interface RelayEndpoint {
  /** Where the relay's port is published, normally 127.0.0.1. */
  readonly host: string
  readonly port: number
  readonly token: Buffer
}

/** Bounds of the adaptive pool (connections kept authenticated and unbound). */
export const POOL_MIN = 2
export const POOL_MAX = 64
/** How often a refill waits for the relay's OK (the others park at once). */
const ACK_EVERY_MS = 10_000
/** A connection parked without the relay's OK and closed sooner than this is a failure. */
const EARLY_CLOSE_MS = 1000
/** Handshakes in flight at once when refilling. */
const REFILL_PARALLEL = 8
/** A refill sample counts at most this long (ms): past it, the pool is not what helps. */
const REFILL_MS_MAX = 100
/** Time constant of the decaying rate of new dials, ms. */
const RATE_TAU_MS = 1000
/**
 * After a pool hit the replacement waits, so that its connect, AUTH and the
 * forwarder's and relay's work for it do not run ahead of the client's first
 * bytes on the same path: until the first byte comes back on the connection
 * just taken (the exchange is through), or at most this long (ms; a native
 * splice takes the socket before JS sees a byte, a server may be slow).
 */
export const REFILL_DEFER_MS = 5

export interface RelayDialerOptions extends RelayEndpoint {
  /**
   * Authenticated connections kept ready, none of them bound to a
   * destination: a fixed count (0 disables the pool), or `auto` (the
   * default), sized from the recent rate of new dials times the time a
   * refill takes, twice over, between POOL_MIN and POOL_MAX.
   */
  readonly poolSize?: number | 'auto'
  /** Pooled connections older than this are replaced (default 30000; keep it under the relay's idle timeout). */
  readonly maxIdleMs?: number
  /** How long a pool hit's replacement may wait for the first byte back (default REFILL_DEFER_MS). */
  readonly refillDeferMs?: number
  /** Deadline for connect + HELLO when filling the pool (default 5000). */
  readonly handshakeTimeoutMs?: number
  /** Ask the relay to write a PROXY v2 header upstream when a dial carries a source. */
  readonly proxyV2?: boolean
  readonly logger?: RelayLogger
  readonly metrics?: Registry
  /** Label for logs and metrics, e.g. the cluster name. */
  readonly name?: string
  /** Streams over a few long-lived connections (mux; the pool while the relay takes none), a connection per dial (pool), or auto (the default: the pool, mux while new connections come fast; AUTO_MUX_RATE in mux-client.ts). */
  readonly transport?: RelayTransport
}

export interface RelayPoolStats {
  readonly idle: number
  /** What the pool refills to now (fixed, or from the recent dial rate). */
  readonly target: number
  /** New dials per second, decayed over about a second. */
  readonly rate: number
  readonly connecting: number
  readonly hits: number
  readonly misses: number
  /** Pooled connections dropped because they died or aged out. */
  readonly discarded: number
  readonly handshakeFailures: number
  /** hits / (hits + misses), 0 before any dial. */
  readonly hitRate: number
  /** How the relay splices, as it reported in its last OK (unknown before one). */
  readonly dataPath: 'native' | 'js' | 'unknown'
  /** Who accepts in the relay: its addon (INFO_LANE: a pooled connection costs it no JS), or its JS. */
  readonly acceptPath?: 'native' | 'js'
  readonly lastError?: string
  /** How dials travel now: `mux` (streams over long-lived connections) or `pool` (a connection each). */
  readonly transport?: 'mux' | 'pool'
  /** The transport follows the rate of new dials to each destination (`--relay-transport auto`). */
  readonly auto?: boolean
  /** auto: destinations whose new connections come fast enough for mux now. */
  readonly destinationsOnMux?: number
  /** auto: new connections a second to one destination from which it goes over mux (AUTO_MUX_RATE, or AUTO_MUX_RATE_LANE against a relay whose addon accepts). */
  readonly autoMuxRate?: number
  readonly mux?: MuxPoolStats
}

function target (host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}

/** A dial's destination in error texts (built only when one is needed, not per dial). */
function where (req: { host: string, port: number }): string {
  return `relay → ${target(req.host, req.port)}`
}

interface Reply { status: number, info: number }

/**
 * Read the relay's three-byte reply (version, status, info). Leaves the
 * socket paused, with any bytes beyond the reply (a server that speaks first,
 * after an ANSWER) unshifted for the splice.
 */
function readReply (sock: Socket, timeoutMs: number, what: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    let got: Buffer = Buffer.alloc(0)
    let timer: NodeJS.Timeout | undefined
    const cleanup = (): void => {
      if (timer !== undefined) clearTimeout(timer)
      sock.pause()
      sock.removeListener('data', onData)
      sock.removeListener('end', onEnd)
      sock.removeListener('error', onError)
      sock.removeListener('close', onEnd)
    }
    const fail = (err: Error): void => {
      cleanup()
      sock.on('error', noop)
      sock.destroy()
      reject(err)
    }
    const onData = (chunk: Buffer): void => {
      got = got.length === 0 ? chunk : Buffer.concat([got, chunk])
      // An older relay answers `1 | VERSION` to a v2 AUTH and closes: say so at its first byte.
      if (got[0] !== VERSION) { fail(new KtError('KT_ERR_RELAY_PROTOCOL', `${what}: the relay answered protocol version ${got[0]}, this host speaks ${VERSION} (an older relay image: \`up\` replaces it)`)); return }
      if (got.length < REPLY_LEN) return
      cleanup()
      if (got.length > REPLY_LEN) sock.unshift(got.subarray(REPLY_LEN))
      resolve({ status: got[1] as number, info: got[2] as number })
    }
    const onEnd = (): void => fail(new KtError('KT_ERR_RELAY_DOWN', `${what}: the relay closed the connection without answering (is the relay container running?)`))
    const onError = (err: Error): void => fail(new KtError('KT_ERR_RELAY_DOWN', `${what}: ${(err as NodeJS.ErrnoException).code ?? err.message}${(err as NodeJS.ErrnoException).code === 'ECONNRESET' ? ' (the relay refused: see its log)' : ''}`, { cause: err }))
    if (timeoutMs > 0) {
      timer = setTimeout(() => fail(new KtError('KT_ERR_CONNECT_TIMEOUT', `${what}: no answer from the relay within ${timeoutMs} ms`)), timeoutMs)
    }
    sock.on('data', onData)
    sock.on('end', onEnd)
    sock.on('close', onEnd)
    sock.on('error', onError)
    sock.resume()
  })
}

function noop (): void {}

/** TCP connect to the relay's published port, with a deadline. Resolves with a paused socket. */
function connectRelay (ep: RelayEndpoint, timeoutMs: number): Promise<Socket> {
  const where = `relay ${target(ep.host, ep.port)}`
  return new Promise((resolve, reject) => {
    const sock = connect({ host: ep.host, port: ep.port, allowHalfOpen: true, noDelay: true })
    sock.pause()
    const timer = setTimeout(() => {
      sock.on('error', noop)
      sock.destroy()
      reject(new KtError('KT_ERR_CONNECT_TIMEOUT', `${where}: no connection within ${timeoutMs} ms`))
    }, timeoutMs)
    const onError = (err: Error): void => {
      clearTimeout(timer)
      sock.on('error', noop)
      sock.destroy()
      reject(new KtError('KT_ERR_RELAY_DOWN', `${where}: ${(err as NodeJS.ErrnoException).code ?? err.message} (is the relay container running?)`, { cause: err }))
    }
    sock.once('error', onError)
    sock.once('connect', () => {
      clearTimeout(timer)
      sock.removeListener('error', onError)
      resolve(sock)
    })
  })
}

async function handshake (ep: RelayEndpoint, timeoutMs: number, ack = true): Promise<{ sock: Socket, info: number | undefined }> {
  const started = Date.now()
  const sock = await connectRelay(ep, timeoutMs)
  const where = `relay ${target(ep.host, ep.port)}`
  sock.write(encodeAuth(ep.token, { ack }))
  if (!ack) return { sock, info: undefined }
  const r = await readReply(sock, Math.max(1, timeoutMs - (Date.now() - started)), where)
  if (r.status === Status.OK) return { sock, info: r.info }
  sock.on('error', noop)
  sock.destroy()
  const hint = r.status === Status.STALE ? ' (the clocks of this host and the Docker VM differ by more than the relay\'s window)' : ''
  throw new KtError(statusErrorCode(r.status), `${where} refused the AUTH: ${statusName(r.status)}${hint}`)
}

/**
 * Connect to the relay and authenticate, waiting for its OK. Resolves with a
 * paused socket on which the relay waits for a BIND. Rejects with
 * KT_ERR_RELAY_DOWN (no relay behind the port), KT_ERR_RELAY_AUTH (wrong
 * token, or clocks too far apart), KT_ERR_RELAY_PROTOCOL (an older relay) or
 * KT_ERR_CONNECT_TIMEOUT.
 */
export async function relayHandshake (ep: RelayEndpoint, timeoutMs: number): Promise<Socket> {
  return (await handshake(ep, timeoutMs)).sock
}

interface Pooled {
  readonly sock: Socket
  readonly since: number
  /** Parked without waiting for the relay's OK. */
  readonly unconfirmed: boolean
  readonly timer: NodeJS.Timeout
  readonly onGone: () => void
}

/** The first byte back on a connection just taken from the pool: its exchange is through, refill now. */
function refillAfterFirstByte (d: RelayDialer): void {
  // After those bytes have been passed to the client (nextTick runs once the read returns).
  process.nextTick(refillDeferred, d)
}

/** auto: destinations whose rates are remembered at most (older ones are swept first). */
const RATES_MAX = 4096

/** A count of events that decays with time constant RATE_TAU_MS: about the events of the last RATE_TAU_MS. */
class DecayingCount {
  private acc = 0
  private at: number
  constructor (now: number) { this.at = now }

  value (now: number): number {
    return this.acc * Math.exp(-(now - this.at) / RATE_TAU_MS)
  }

  /** Count one event at `now`. */
  add (now: number): void {
    this.acc = this.value(now) + 1
    this.at = now
  }

  /** Events a second, as of `now`. */
  perSecond (now: number): number {
    return this.value(now) * 1000 / RATE_TAU_MS
  }
}

interface DestRate {
  readonly dials: DecayingCount
  /** Dials to it go over mux now. */
  mux: boolean
  /** When a connection to it that moved AUTO_BULK_BYTES or more closed (0: none). */
  bulkAt: number
}

const kDestRate = Symbol('kt.relay.destRate')
type Watched = (Socket | MuxStream) & { [kDestRate]?: DestRate }

/** auto: a connection's bytes, once it closed, tell its destination whether it moves bulk. */
function onDialedClose (this: Watched): void {
  const r = this[kDestRate]
  const n = 'ktMux' in this ? this.bytesMoved : this.bytesRead + this.bytesWritten
  if (r !== undefined && n >= AUTO_BULK_BYTES) r.bulkAt = Date.now()
}

/** The real client to carry in the BIND, when the request names a valid one. */
function sourceOf (req: DialRequest): Address | undefined {
  return req.source !== undefined && isIP(req.source.address) !== 0 ? req.source : undefined
}

function destKey (address: string, port: number): string {
  return `${address}|${port}`
}

function watchBytes (s: Watched, r: DestRate): void {
  s[kDestRate] = r
  s.once('close', onDialedClose)
}

function refillDeferred (d: RelayDialer): void {
  d.refillNow()
}

export class RelayDialer implements Dialer {
  private readonly ep: RelayEndpoint
  private readonly fixedSize: number | undefined
  /** Pool dials, decaying: the pool's size follows it. */
  private readonly dials = new DecayingCount(Date.now())
  /** Smoothed time a refill takes (connect + HELLO + OK), ms. */
  private refillMs = 1
  private trimTimer: NodeJS.Timeout | undefined
  /** The deferred refill's deadline (REFILL_DEFER_MS), one for all dials. */
  private deferTimer: NodeJS.Timeout | undefined
  /** When the first deferred refill still pending was asked for (0: none). */
  private deferredSince = 0
  /** Smoothed time a deferred refill waited, ms: the pool covers it too. */
  private deferMs = 0
  private readonly maxIdleMs: number
  private readonly handshakeTimeoutMs: number
  private readonly refillDeferMs: number
  private readonly proxyV2: boolean
  private readonly log: RelayLogger
  private readonly idle: Pooled[] = []
  private connecting = 0
  private hits = 0
  private misses = 0
  private discarded = 0
  private handshakeFailures = 0
  private info: number | undefined
  /** When the last ACKed AUTH was answered; one is in flight. */
  private ackAt = 0
  private ackInFlight = false
  private consecutiveFailures = 0
  private lastError: string | undefined
  private retryTimer: NodeJS.Timeout | undefined
  private closed = false
  private readonly poolCounter: Counter | undefined
  private readonly waiters: Array<() => void> = []
  /** Multiplexed carriers (mux-client.ts); undefined with transport pool, and with auto until first needed. */
  mux: MuxPool | undefined
  private readonly auto: boolean
  /** auto: the recent rate of new dials to each destination, and whether its dials go over mux now. */
  private readonly rates = new Map<string, DestRate>()
  /** Requests dialNow() began and found nothing warm for: dial() goes on from the miss. */
  private readonly startedDials = new WeakSet<DialRequest>()

  constructor (opts: RelayDialerOptions) {
    if (isIP(opts.host) === 0) throw new InvalidArgumentError('KT_ERR_INVALID_ADDRESS', `relay host ${JSON.stringify(opts.host)} is not an IP address`)
    if (!Number.isInteger(opts.port) || opts.port < 1 || opts.port > 65535) throw new InvalidArgumentError('KT_ERR_INVALID_ADDRESS', `relay port ${opts.port} is out of range`)
    if (opts.token.length < TOKEN_MIN || opts.token.length > TOKEN_MAX) throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `relay token must be ${TOKEN_MIN}-${TOKEN_MAX} bytes`)
    this.ep = Object.freeze({ host: opts.host, port: opts.port, token: Buffer.from(opts.token) })
    const size = opts.poolSize ?? 'auto'
    if (size !== 'auto' && (!Number.isInteger(size) || size < 0)) throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `relay pool size must be auto or a whole number, got ${String(size)}`)
    this.fixedSize = size === 'auto' ? undefined : size
    this.maxIdleMs = opts.maxIdleMs ?? 30_000
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? 5000
    this.refillDeferMs = opts.refillDeferMs ?? REFILL_DEFER_MS
    this.proxyV2 = opts.proxyV2 === true
    const name = opts.name ?? target(opts.host, opts.port)
    this.log = opts.logger ?? silentRelayLogger
    if (opts.metrics !== undefined) {
      this.poolCounter = opts.metrics.counter('kt_relay_pool_total', 'Relay dials by pool result (hit: a warm authenticated connection was used)')
      const g = opts.metrics.gauge('kt_relay_pool_idle', 'Warm authenticated relay connections')
      g.collect((set) => set({ relay: name }, this.idle.length))
    }
    const transport = opts.transport ?? 'auto'
    this.auto = transport === 'auto'
    this.mux = transport === 'mux' ? this.newMux() : undefined
    this.refill()
  }

  stats (): RelayPoolStats {
    const s: { -readonly [K in keyof RelayPoolStats]: RelayPoolStats[K] } = {
      idle: this.idle.length, target: this.target(), rate: Math.round(this.dials.perSecond(Date.now())), connecting: this.connecting, hits: this.hits, misses: this.misses,
      discarded: this.discarded, handshakeFailures: this.handshakeFailures,
      hitRate: this.hits + this.misses === 0 ? 0 : this.hits / (this.hits + this.misses),
      dataPath: this.info === undefined ? 'unknown' : (this.info & INFO_NATIVE) !== 0 ? 'native' : 'js',
    }
    if (this.info !== undefined) s.acceptPath = (this.info & INFO_LANE) !== 0 ? 'native' : 'js'
    if (this.lastError !== undefined) s.lastError = this.lastError
    const onMux = this.auto ? this.onMuxNow() : 0
    s.transport = this.mux !== undefined && this.mux.stats().state === 'live' && (!this.auto || onMux > 0) ? 'mux' : 'pool'
    if (this.auto) { s.auto = true; s.destinationsOnMux = onMux; s.autoMuxRate = this.autoRates()[0] }
    if (this.mux !== undefined) s.mux = this.mux.stats()
    return s
  }

  /** auto: the rates a destination goes to mux at, and back to the pool under: by what the relay says of itself. */
  private autoRates (): readonly [number, number] {
    const info = this.info ?? 0
    if ((info & INFO_MUX_LANE) !== 0) return [AUTO_MUX_RATE_MUX_LANE, AUTO_POOL_RATE_MUX_LANE]
    return (info & INFO_LANE) !== 0 ? [AUTO_MUX_RATE_LANE, AUTO_POOL_RATE_LANE] : [AUTO_MUX_RATE, AUTO_POOL_RATE]
  }

  /**
   * auto, against a relay whose addon serves the carriers (INFO_MUX_LANE): open
   * them as soon as the relay says so, so the first burst of a destination
   * that turns busy (a client opening fifty keep-alive connections at once)
   * finds them live. They are connections to the relay, not to any backend.
   */
  private eagerMux (): void {
    if (!this.auto || this.closed || this.mux !== undefined || ((this.info ?? 0) & INFO_MUX_LANE) === 0) return
    this.mux = this.newMux()
    this.log.info({ relay: target(this.ep.host, this.ep.port) }, 'the relay serves multiplexed connections natively: opening them')
  }

  /** auto: destinations on mux whose rate has not decayed under the pool rate since their last dial. */
  private onMuxNow (): number {
    if (this.mux === undefined) return 0
    const now = Date.now()
    const back = this.autoRates()[1]
    let n = 0
    for (const r of this.rates.values()) if (r.mux && r.dials.perSecond(now) >= back) n++
    return n
  }

  /** Forget destinations not dialled for a while (their decayed rate under one a second). */
  private sweepRates (now: number): void {
    for (const [k, r] of this.rates) if (r.dials.perSecond(now) < 1) this.rates.delete(k)
  }

  private newMux (): MuxPool {
    return new MuxPool({ handshake: () => handshake(this.ep, this.handshakeTimeoutMs, true), logger: this.log, where: target(this.ep.host, this.ep.port) })
  }

  /** auto: the destination's rate, with this dial counted. */
  private noteDestination (dst: Address, now: number): DestRate {
    const key = destKey(dst.address, dst.port)
    let r = this.rates.get(key)
    if (r === undefined) {
      if (this.rates.size >= RATES_MAX) this.sweepRates(now)
      r = { dials: new DecayingCount(now), mux: false, bulkAt: 0 }
      this.rates.set(key, r)
    }
    r.dials.add(now)
    return r
  }

  /**
   * A stream for this dial, or undefined (the pool dials). With auto (`r`,
   * the destination's rate), only while new dials to it come at
   * the mux rate a second or more (autoRates: by the relay's INFO_LANE and INFO_MUX_LANE; with
   * hysteresis down to the pool rate), and
   * not within AUTO_BULK_HOLD_MS of a connection to it that moved
   * AUTO_BULK_BYTES; the carriers are opened the first time, and until one
   * is live the pool serves.
   */
  private openStream (dst: Address, source: Address | undefined, r: DestRate | undefined, now: number): MuxStream | undefined {
    if (r !== undefined) {
      const perSecond = r.dials.perSecond(now)
      const bulk = r.bulkAt > 0 && now - r.bulkAt < AUTO_BULK_HOLD_MS
      const [toMux, toPool] = this.autoRates()
      if (!r.mux && !bulk && perSecond >= toMux) {
        r.mux = true
        if (this.mux === undefined) {
          this.mux = this.newMux()
          this.log.info({ relay: target(this.ep.host, this.ep.port), destination: target(dst.address, dst.port), rate: Math.round(perSecond) }, 'new connections come fast: opening multiplexed relay connections')
        }
      } else if (r.mux && (bulk || perSecond < toPool)) {
        r.mux = false
      }
      if (!r.mux) return undefined
    }
    return this.mux?.open(dst, source, this.proxyV2)
  }

  /**
   * How many unbound connections to keep: fixed, or enough for the dials
   * expected while one refill is under way, twice over (bursts), at least
   * POOL_MIN so the first connection after a quiet spell is a hit.
   */
  target (): number {
    if (this.fixedSize !== undefined) return this.fixedSize
    const expected = this.dials.value(Date.now()) / RATE_TAU_MS * (this.refillMs + this.deferMs) * 2
    // The decayed rate never reaches 0: below a quarter of a connection, none.
    return Math.min(POOL_MAX, POOL_MIN + (expected < 0.25 ? 0 : Math.ceil(expected)))
  }

  /** Resolve true once the pool is full, false at the deadline or when it cannot fill. */
  warm (timeoutMs: number): Promise<boolean> {
    if (this.idle.length >= this.target()) return Promise.resolve(true)
    return new Promise((resolve) => {
      const timer = setTimeout(() => { remove(); resolve(false) }, timeoutMs)
      const check = (): void => {
        if (this.idle.length >= this.target()) { clearTimeout(timer); remove(); resolve(true) }
      }
      const remove = (): void => {
        const i = this.waiters.indexOf(check)
        if (i >= 0) this.waiters.splice(i, 1)
      }
      this.waiters.push(check)
    })
  }

  /**
   * The dial's synchronous part (Dialer.dialNow): a stream whose OPEN, or a
   * warm connection whose BIND, was written just now, or undefined when a
   * connect is needed first (or the request is one dial() refuses); dial()
   * with the same request then goes on from there and counts it once. The
   * listener calls this as the kernel hands it the client, before Node sets
   * its socket up (listener.ts hookEarlyDial), so the relay dials the node
   * while this process is still busy with the connection.
   */
  dialNow (req: DialRequest): Socket | undefined {
    if (this.closed || this.refusal(req) !== undefined) return undefined
    const s = this.startDial(req, false, false)
    if (s === undefined) this.startedDials.add(req)
    return s
  }

  /**
   * A socket on which the relay is connecting (or has connected) to the
   * destination, resolved without waiting for the relay: the caller's first
   * write follows the BIND. With `answer`, wait for the relay's OK or its
   * refusal's status instead (one round trip; for checks and tests).
   */
  async dial (req: DialRequest, opts: { answer?: boolean, udp?: boolean } = {}): Promise<Socket> {
    if (this.closed) throw new KtError('KT_ERR_RELAY_DOWN', 'the relay dialer is closed')
    const bad = this.refusal(req)
    if (bad !== undefined) throw bad
    const answer = opts.answer === true
    const udp = opts.udp === true
    const deadline = Date.now() + req.timeoutMs
    // dialNow() already began this one and found nothing warm: on from the miss.
    const began = !answer && !udp && this.startedDials.delete(req)
    let sock = began ? undefined : this.startDial(req, answer, udp)
    if (sock !== undefined && !answer) return sock
    if (sock === undefined) {
      this.misses++
      this.poolCounter?.inc({ result: 'miss' })
      this.refill()
      // The destination's rate entry as the dial counted it (startDial), before a sweep may drop it.
      const rate = this.auto && !answer && !udp ? this.rates.get(destKey(req.host, req.port)) : undefined
      sock = await connectRelay(this.ep, req.timeoutMs)
      sock.write(Buffer.concat([encodeAuth(this.ep.token, { ack: answer }), this.bindFor({ address: req.host, port: req.port }, sourceOf(req), answer, udp)]))
      if (answer) {
        const auth = await readReply(sock, Math.max(1, deadline - Date.now()), where(req))
        if (auth.status !== Status.OK) {
          sock.on('error', noop)
          sock.destroy()
          throw new KtError(statusErrorCode(auth.status), `${where(req)}: the relay refused the AUTH: ${statusName(auth.status)}`)
        }
      } else {
        if (rate !== undefined) watchBytes(sock, rate)
        return sock
      }
    }
    const r = await readReply(sock, Math.max(1, deadline - Date.now()), where(req))
    if (r.status === Status.OK) return sock
    sock.on('error', noop)
    sock.destroy()
    throw new KtError(statusErrorCode(r.status), `${where(req)}: the relay answered ${statusName(r.status)}`)
  }

  /** Why dial() refuses this request before any I/O, or undefined. */
  private refusal (req: DialRequest): KtError | undefined {
    if (isIP(req.host) === 0) return new InvalidArgumentError('KT_ERR_INVALID_ADDRESS', `relay destinations are IP literals, got ${JSON.stringify(req.host)}`)
    if (!Number.isInteger(req.port) || req.port < 1 || req.port > 65535) return new InvalidArgumentError('KT_ERR_INVALID_ADDRESS', `destination port ${req.port} is out of range`)
    // What the relay refuses whatever its allowlist, refused here with its code
    // (a refusal from the relay itself is a reset, without one).
    const forbidden = forbiddenReason(req.host)
    if (forbidden !== null) return new KtError('KT_ERR_RELAY_DENIED', `${where(req)}: ${forbidden} addresses are never relayed`)
    return undefined
  }

  private bindFor (dst: Address, source: Address | undefined, answer: boolean, udp: boolean): Buffer {
    return encodeConnect(dst, source, this.proxyV2 && !udp, answer, udp)
  }

  /**
   * What needs no connect: a stream (mux-client.ts), or a warm connection
   * with the BIND written (a hit). Undefined: nothing warm, with the dial
   * counted (the caller counts the miss and connects).
   */
  private startDial (req: DialRequest, answer: boolean, udp: boolean): Socket | undefined {
    const source = sourceOf(req)
    const dst = { address: req.host, port: req.port }
    const now = Date.now()
    const rate = this.auto && !answer && !udp ? this.noteDestination(dst, now) : undefined
    const stream = answer || udp ? undefined : this.openStream(dst, source, rate, now)
    if (stream !== undefined) {
      if (rate !== undefined) watchBytes(stream, rate)
      return stream as unknown as Socket
    }
    this.dials.add(now)
    const sock = this.take()
    if (sock === undefined) return undefined
    this.hits++
    this.poolCounter?.inc({ result: 'hit' })
    sock.write(this.bindFor(dst, source, answer, udp))
    // The replacement waits for this exchange (REFILL_DEFER_MS), unless the
    // pool is down to half its target: then the next clients would wait.
    if (this.idle.length === 0 || this.idle.length * 2 < this.target()) this.refill()
    else this.deferRefill(sock)
    if (rate !== undefined) watchBytes(sock, rate)
    return sock
  }

  /**
   * Whether the relay carries UDP flows, as its last OK said (INFO_UDP);
   * undefined before any OK. Relays older than UDP support say no.
   */
  get carriesUdp (): boolean | undefined {
    return this.info === undefined ? undefined : (this.info & INFO_UDP) !== 0
  }

  /** A UDP flow to req's destination over one relay connection (udp-client.ts); no round trip, as dial(). */
  dialDatagrams (req: DialRequest, handlers: DatagramHandlers): Promise<DatagramChannel> {
    return openUdpFlow(this, req, handlers)
  }

  /** Stop refilling and close the idle connections. In-flight dials finish. */
  async close (): Promise<void> {
    this.closed = true
    this.mux?.close()
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer)
    if (this.trimTimer !== undefined) clearInterval(this.trimTimer)
    if (this.deferTimer !== undefined) clearTimeout(this.deferTimer)
    for (const p of this.idle.splice(0)) this.drop(p)
  }

  /**
   * Refill once `sock` (just taken, its BIND written) gets its first byte
   * back, as the JS splice reads it (onFirstSplicedRead), or at
   * REFILL_DEFER_MS, whichever comes first (a native splice takes the socket
   * before JS sees a byte).
   */
  private deferRefill (sock: Socket): void {
    onFirstSplicedRead(sock, refillAfterFirstByte.bind(null, this))
    if (this.deferredSince === 0) this.deferredSince = Date.now()
    if (this.deferTimer === undefined) {
      this.deferTimer = setTimeout(() => { this.deferTimer = undefined; this.refillNow() }, this.refillDeferMs)
      this.deferTimer.unref()
    }
  }

  /** @internal the deferred refill (first byte back, or its deadline). */
  refillNow (): void {
    if (this.deferredSince !== 0) {
      this.deferMs += (Math.min(REFILL_MS_MAX, Date.now() - this.deferredSince) - this.deferMs) / 8
      this.deferredSince = 0
    }
    if (this.deferTimer !== undefined) { clearTimeout(this.deferTimer); this.deferTimer = undefined }
    this.refill()
  }

  private take (): Socket | undefined {
    for (;;) {
      const p = this.idle.shift()
      if (p === undefined) return undefined
      this.unwatch(p)
      if (!p.sock.destroyed && p.sock.readable && p.sock.writable) return p.sock
      this.discarded++
      p.sock.destroy()
    }
  }

  private unwatch (p: Pooled): void {
    clearTimeout(p.timer)
    p.sock.pause()
    p.sock.removeListener('data', p.onGone)
    p.sock.removeListener('end', p.onGone)
    p.sock.removeListener('close', p.onGone)
    p.sock.removeListener('error', p.onGone)
  }

  private drop (p: Pooled): void {
    this.unwatch(p)
    p.sock.on('error', noop)
    p.sock.destroy()
  }

  private refill (): void {
    if (this.closed || this.retryTimer !== undefined) return
    const want = this.target()
    // At most REFILL_PARALLEL handshakes at once: a burst of refills would
    // lengthen each (the forwarder, the relay and this loop are shared),
    // raise the measured refill time, and so the target: a feedback loop.
    while (this.idle.length + this.connecting < want && this.connecting < REFILL_PARALLEL) {
      // Most refills park a connection as soon as TCP is up and the AUTH is
      // written: the refill then costs one local connect, not a round trip to
      // the relay. One at a time waits for the relay's OK instead: the first,
      // any after a failure, and one every ACK_EVERY_MS, which proves the path
      // up to the relay and brings its data path and any refusal's status.
      const now = Date.now()
      const ack = this.info === undefined || this.consecutiveFailures > 0 || now - this.ackAt > ACK_EVERY_MS
      if (ack && this.ackInFlight) {
        if (this.info === undefined || this.consecutiveFailures > 0) break
      }
      const confirm = ack && !this.ackInFlight
      if (confirm) this.ackInFlight = true
      this.connecting++
      const started = now
      handshake(this.ep, this.handshakeTimeoutMs, confirm).then(({ sock, info }) => {
        this.connecting--
        if (confirm) { this.ackInFlight = false; this.ackAt = Date.now(); this.info = info; this.eagerMux() }
        this.refillMs += (Math.min(REFILL_MS_MAX, Math.max(0.1, Date.now() - started)) - this.refillMs) / 8
        // Only the relay's OK proves it is back; a connect proves the forwarder.
        if (confirm) {
          if (this.consecutiveFailures > 0) this.log.info({ relay: target(this.ep.host, this.ep.port) }, 'relay reachable again')
          this.consecutiveFailures = 0
        }
        if (this.closed) { sock.destroy(); return }
        this.park(sock, !confirm)
        this.refill()
      }, (err: KtError) => {
        this.connecting--
        if (confirm) this.ackInFlight = false
        this.handshakeFailures++
        this.lastError = `${err.code}: ${err.message}`
        // Log the first failure of a run only: the relay being down is one event, not one per retry.
        if (this.consecutiveFailures++ === 0) this.log.warn({ relay: target(this.ep.host, this.ep.port), code: err.code, err }, 'relay pool cannot connect')
        if (this.closed || this.retryTimer !== undefined) return
        const delay = Math.min(5000, 100 * 2 ** Math.min(this.consecutiveFailures, 6))
        this.retryTimer = setTimeout(() => { this.retryTimer = undefined; this.refill() }, delay)
        this.retryTimer.unref()
      })
    }
  }

  private park (sock: Socket, unconfirmed: boolean): void {
    // While parked the relay must stay silent: any byte, FIN, RST or close
    // means the connection is no good, and it is dropped and replaced.
    const p: Pooled = {
      sock,
      since: Date.now(),
      unconfirmed,
      timer: setTimeout(() => {
        const i = this.idle.indexOf(p)
        if (i >= 0) this.idle.splice(i, 1)
        this.discarded++
        this.drop(p)
        this.refill()
      }, this.maxIdleMs),
      onGone: () => {
        const i = this.idle.indexOf(p)
        if (i < 0) return
        this.idle.splice(i, 1)
        this.discarded++
        this.drop(p)
        if (p.unconfirmed && Date.now() - p.since < EARLY_CLOSE_MS) {
          // The forwarder took the connection, then closed it (no relay behind
          // it), or the relay reset an AUTH it refused: a failure, not churn.
          this.failedEarly()
          return
        }
        this.refill()
      },
    }
    p.timer.unref()
    sock.on('data', p.onGone)
    sock.on('end', p.onGone)
    sock.on('close', p.onGone)
    sock.on('error', p.onGone)
    sock.resume()
    this.idle.push(p)
    this.armTrim()
    for (const w of [...this.waiters]) w()
  }

  private failedEarly (): void {
    this.handshakeFailures++
    this.lastError = 'KT_ERR_RELAY_DOWN: a new relay connection was closed at once (no relay behind the published port, or a refused AUTH; the next refill asks the relay why)'
    if (this.consecutiveFailures++ === 0) this.log.warn({ relay: target(this.ep.host, this.ep.port) }, 'relay pool: new connections are closed at once')
    if (this.closed || this.retryTimer !== undefined) return
    const delay = Math.min(5000, 100 * 2 ** Math.min(this.consecutiveFailures, 6))
    this.retryTimer = setTimeout(() => { this.retryTimer = undefined; this.refill() }, delay)
    this.retryTimer.unref()
  }

  /** While the pool holds more than the rate now asks for, close the oldest surplus once a second. */
  private armTrim (): void {
    if (this.trimTimer !== undefined || this.fixedSize !== undefined) return
    this.trimTimer = setInterval(() => {
      const target = this.target()
      while (this.idle.length > target) {
        const p = this.idle.shift() as Pooled
        this.discarded++
        this.drop(p)
      }
      if (this.idle.length <= POOL_MIN && this.trimTimer !== undefined) { clearInterval(this.trimTimer); this.trimTimer = undefined }
    }, 1000)
    this.trimTimer.unref()
  }
}
