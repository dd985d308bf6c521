// Warm upstream connections: per backend, up to `size` sockets connected
// ahead of time, each handed to exactly one client connection (a TCP stream
// cannot be shared). A client then skips the connect round trip, and, behind
// a forwarder that accepts at once and connects onward slowly (Docker
// Desktop's port forwarder, the relay), it skips that onward connect too.
//
// Idle sockets are read-paused in the sense that matters: nothing ever
// consumes their bytes. A 'readable' listener keeps libuv reading so a FIN,
// an RST or stray bytes are noticed, but data that arrives stays in the
// socket's buffer and the socket is evicted, never handed out: on a
// client-first protocol (HTTP, TLS) bytes before any request are an error
// from the server (an HTTP 408, a TLS alert), and handing them to a client
// would corrupt its stream. Server-first protocols (SMTP, MySQL) therefore
// gain nothing from the pool; their greeting evicts the socket, and the
// refill backs off, so such a backend is not reconnected in a loop.
//
// Eviction: idle TTL, peer close, error, stray bytes, the backend going out
// of rotation (suspend), the pool closing. Refill: in the background, at most
// `maxConnecting` dials at a time, with doubling backoff after failures.

import type { Socket } from 'node:net'
import { InvalidArgumentError } from '../errors.js'
import type { Counter, Gauge, Registry } from '../observe/metrics.js'
import { endpointKey, type Endpoint } from '../routing/types.js'
import type { DialFn } from './health.js'

export type { DialFn } from './health.js'

export interface PoolOptions {
  /** Idle sockets to keep; 0 disables the pool. Default 2. */
  readonly size?: number
  /** An idle socket older than this is closed and replaced. Default 30 s: below the common first-byte timeouts of servers (nginx client_header_timeout and Node's headersTimeout are 60 s). */
  readonly idleTtlMs?: number
  readonly connectTimeoutMs?: number
  /** Warm dials in flight at once. Default 2. */
  readonly maxConnecting?: number
  /** First retry delay after a failed warm dial, doubling to `backoffMaxMs`. Defaults 250 ms and 30 s. */
  readonly backoffBaseMs?: number
  readonly backoffMaxMs?: number
  readonly dial: DialFn
  /** Every warm dial's outcome (for passive health and the latency histogram). */
  readonly onDial?: ((err: Error | null, ms: number) => void) | undefined
  /** `upstream` label for the pool metrics; no metrics without a registry. */
  readonly upstream?: string
  readonly metrics?: Registry | undefined
  readonly random?: () => number
}

export type EvictCause = 'ttl' | 'peer-close' | 'error' | 'unsolicited-data' | 'dead-on-take' | 'unhealthy' | 'closed' | 'resize' | 'reconfigured'
const EVICT_CAUSES: readonly EvictCause[] = ['ttl', 'peer-close', 'error', 'unsolicited-data', 'dead-on-take', 'unhealthy', 'closed', 'resize', 'reconfigured']

/** A peer that closes a fresh idle socket sooner than this counts as a failure for the refill backoff. */
const EARLY_CLOSE_MS = 1000

const kPool = Symbol('kt.pool')
const kSince = Symbol('kt.pool.since')
const kChecking = Symbol('kt.pool.checking')

interface PooledSocket extends Socket {
  [kPool]: Pool | undefined
  [kSince]: number
  [kChecking]: AcquireCallback | undefined
}

export type AcquireCallback = (socket: Socket | undefined) => void

const EMPTY = Buffer.alloc(0)

function onIdleReadable (this: PooledSocket): void {
  this[kPool]?.evict(this, this.readableLength > 0 ? 'unsolicited-data' : 'peer-close')
}
function onIdleEnd (this: PooledSocket): void { this[kPool]?.evict(this, 'peer-close') }
function onIdleClose (this: PooledSocket): void { this[kPool]?.evict(this, 'peer-close') }
function onIdleError (this: PooledSocket): void { this[kPool]?.evict(this, 'error') }
function onTtlTimer (p: Pool): void { p.expire() }
function onBackoffTimer (p: Pool): void { p.backoffOver() }
function noop (): void {}

const registries = new WeakMap<Registry, Set<Pool>>()

/** `--pool-size` as configured: a count, or `auto`. */
export type PoolSizeSetting = number | 'auto'

/**
 * The pool size an upstream runs with. An explicit per-upstream size wins
 * (the Service annotation `kind-tunnel.dev/backend-pool`), then a numeric
 * `--pool-size`. `auto`, the default, is 0 everywhere: a warm backend socket
 * is a connection the user's server did not ask for. A server that serves one
 * session at a time (iperf3 -s) takes it as its session and waits on it; a
 * server that speaks first (SMTP, SSH, MySQL, Redis) greets a client that
 * never speaks (issue 12, bug 1). Where connects are slow (relay mode), the
 * relay dialer keeps its own warm connections instead, authenticated to the
 * relay and not yet bound to any backend (src/relay/client.ts).
 */
export function effectivePoolSize (explicit: number | undefined, setting: PoolSizeSetting, _dialer?: string | undefined, _platform: NodeJS.Platform = process.platform): number {
  if (explicit !== undefined) return explicit
  if (setting !== 'auto') return setting
  return 0
}

interface PoolMetrics {
  hits: { v: number }
  misses: { v: number }
  evictions: Map<EvictCause, { v: number }>
  idle: Gauge
}

export class Pool {
  readonly endpoint: Endpoint
  readonly key: string
  readonly upstream: string
  private size: number
  private readonly idleTtlMs: number
  private readonly connectTimeoutMs: number
  private readonly maxConnecting: number
  private readonly backoffBaseMs: number
  private readonly backoffMaxMs: number
  private readonly dial: DialFn
  private readonly onDial: PoolOptions['onDial']
  private readonly random: () => number
  /** Idle sockets, oldest first; taken from the end (newest is least likely to have been closed by the server). */
  private readonly idleList: PooledSocket[] = []
  private connecting = 0
  private failures = 0
  private backoffTimer: NodeJS.Timeout | undefined
  private ttlTimer: NodeJS.Timeout | undefined
  private suspended = false
  private closed = false
  private readonly m: PoolMetrics | undefined
  private readonly counts = { hits: 0, misses: 0, dials: 0, dialFailures: 0 }
  /** @internal The per-registry sets this pool is listed in, for the idle gauge collector. */
  readonly registrySets: Array<Set<Pool>> = []

  constructor (endpoint: Endpoint, opts: PoolOptions) {
    this.endpoint = endpoint
    this.key = endpointKey(endpoint)
    this.upstream = opts.upstream ?? ''
    this.size = checkInt('pool size', opts.size ?? 2, 0)
    this.idleTtlMs = checkInt('pool idle TTL', opts.idleTtlMs ?? 30_000, 1)
    this.connectTimeoutMs = checkInt('pool connect timeout', opts.connectTimeoutMs ?? 5000, 1)
    this.maxConnecting = checkInt('pool maxConnecting', opts.maxConnecting ?? 2, 1)
    this.backoffBaseMs = checkInt('pool backoff base', opts.backoffBaseMs ?? 250, 1)
    this.backoffMaxMs = checkInt('pool backoff max', opts.backoffMaxMs ?? 30_000, this.backoffBaseMs)
    this.dial = opts.dial
    this.onDial = opts.onDial
    this.random = opts.random ?? Math.random
    if (opts.metrics !== undefined) this.m = bindMetrics(opts.metrics, this)
  }

  /** Idle sockets ready to hand out. */
  get idle (): number { return this.idleList.length }
  get pending (): number { return this.connecting }
  get capacity (): number { return this.size }
  get isSuspended (): boolean { return this.suspended }
  get hits (): number { return this.counts.hits }
  get misses (): number { return this.counts.misses }
  /** Warm dials started, and how many of them failed. */
  get dials (): number { return this.counts.dials }
  get dialFailures (): number { return this.counts.dialFailures }

  /** Begin filling. Separate from the constructor so a pool can be built suspended. */
  start (): void {
    this.fill()
  }

  /**
   * Hand out a warm socket, verified, or undefined (a miss: dial instead).
   * The check costs two event-loop turns and catches a socket the server
   * closed while it sat idle even when that close has not been processed yet:
   * - a zero-length write fails at once on a socket that received an RST;
   * - after two turns, a FIN or RST already in the kernel has been read
   *   (our 'readable' listener evicts on it), whichever loop phase we began in.
   * Residual race: a FIN or RST that reaches us after those turns. The caller
   * then sees the upstream close or reset before its first response byte,
   * the same race every keep-alive pool has (RFC 9112 §9.3.1).
   * The callback runs asynchronously, once. The socket comes back paused,
   * ref'd, with no listeners of ours; the caller has written nothing to it.
   */
  acquire (cb: AcquireCallback): void {
    const s = this.takeRaw()
    if (s === undefined) {
      this.miss()
      process.nextTick(cb, undefined)
      return
    }
    s[kChecking] = cb
    s.write(EMPTY)
    setImmediate(checkTurn1, this, s)
  }

  /** @internal */
  checkDone (s: PooledSocket): void {
    const cb = s[kChecking] as AcquireCallback
    s[kChecking] = undefined
    if (s.destroyed || s.readableEnded || s.readableLength > 0 || !s.writable || this.closed || this.suspended) {
      // Already counted when evict() destroyed it during the check.
      this.discard(s, s[kPool] !== this ? undefined : this.closed ? 'closed' : this.suspended ? 'unhealthy' : 'dead-on-take')
      // Try the next idle socket; each attempt removes one, so this ends.
      this.acquire(cb)
      return
    }
    this.failures = 0
    this.release(s)
    this.hit()
    cb(s)
  }

  /**
   * Synchronous take, for callers that cannot wait two turns: never returns a
   * socket known to be dead, but does not catch the close in flight.
   */
  take (): Socket | undefined {
    for (;;) {
      const s = this.takeRaw()
      if (s === undefined) { this.miss(); return undefined }
      if (s.destroyed || s.readableEnded || s.readableLength > 0 || !s.writable) {
        this.discard(s, 'dead-on-take')
        continue
      }
      this.failures = 0
      this.release(s)
      this.hit()
      return s
    }
  }

  private takeRaw (): PooledSocket | undefined {
    if (this.closed || this.suspended) return undefined
    const s = this.idleList.pop()
    if (s === undefined) return undefined
    // Refill behind the one just taken, in the background.
    this.fill()
    return s
  }

  private hit (): void {
    this.counts.hits++
    if (this.m !== undefined) this.m.hits.v++
  }

  private miss (): void {
    this.counts.misses++
    if (this.m !== undefined) this.m.misses.v++
  }

  /** Detach our listeners and hand the socket over in the state the dialer gave it. */
  private release (s: PooledSocket): void {
    s[kPool] = undefined
    s.removeListener('readable', onIdleReadable)
    s.removeListener('end', onIdleEnd)
    s.removeListener('close', onIdleClose)
    s.removeListener('error', onIdleError)
    // Removing the last 'readable' listener leaves flowing === null, where a
    // 'data' listener would start the flow; put back explicit pause.
    s.pause()
    s.ref()
  }

  /** Backend out of rotation: drop idle sockets, stop refilling until resume(). */
  suspend (): void {
    if (this.suspended || this.closed) return
    this.suspended = true
    this.clearBackoff()
    this.drain('unhealthy')
  }

  resume (): void {
    if (!this.suspended || this.closed) return
    this.suspended = false
    this.failures = 0
    this.fill()
  }

  /** Change the target size (table update); shrinking closes the surplus. */
  resize (size: number): void {
    this.size = checkInt('pool size', size, 0)
    while (this.idleList.length > this.size) this.discard(this.idleList.shift() as PooledSocket, 'resize')
    this.fill()
  }

  /** Replace every idle socket (the way they are dialled changed, e.g. another dialer). */
  flush (): void {
    this.drain('reconfigured')
    this.fill()
  }

  /** Close every idle socket and stop. Sockets already handed out are not ours any more. */
  close (): void {
    if (this.closed) return
    this.closed = true
    this.clearBackoff()
    this.drain('closed')
    if (this.ttlTimer !== undefined) clearTimeout(this.ttlTimer)
    this.ttlTimer = undefined
    for (const set of this.registrySets) set.delete(this)
    this.m?.idle.delete({ upstream: this.upstream, backend: this.key })
  }

  private drain (cause: EvictCause): void {
    while (this.idleList.length > 0) this.discard(this.idleList.pop() as PooledSocket, cause)
  }

  /** @internal An idle (or being-checked) socket closed, erred, or got bytes. */
  evict (s: PooledSocket, cause: EvictCause): void {
    if (s[kPool] !== this) return
    const i = this.idleList.indexOf(s)
    if (i !== -1) this.idleList.splice(i, 1)
    // A socket the peer closes right after connecting is a failure for the
    // refill backoff, or a server that closes (or greets) at once would be
    // redialled in a tight loop.
    const early = cause === 'unsolicited-data' || ((cause === 'peer-close' || cause === 'error') && Date.now() - s[kSince] < EARLY_CLOSE_MS)
    if (s[kChecking] === undefined) {
      this.discard(s, cause)
    } else {
      // acquire() is verifying this one: destroy it, checkDone() sees that and moves on.
      this.countEviction(cause)
      s[kPool] = undefined
      s.destroy()
    }
    if (early) this.failed()
    else { this.failures = 0; this.fill() }
  }

  private discard (s: PooledSocket, cause: EvictCause | undefined): void {
    if (cause !== undefined) this.countEviction(cause)
    s[kPool] = undefined
    s.removeListener('readable', onIdleReadable)
    s.removeListener('end', onIdleEnd)
    s.removeListener('close', onIdleClose)
    // Keep an error listener: a late error on a socket we dropped must not crash the process.
    s.removeListener('error', onIdleError)
    s.on('error', noop)
    s.destroy()
  }

  private countEviction (cause: EvictCause): void {
    const c = this.m?.evictions.get(cause)
    if (c !== undefined) c.v++
  }

  /** @internal TTL timer: close sockets idle for idleTtlMs; they are replaced by fill(). */
  expire (): void {
    this.ttlTimer = undefined
    const cutoff = Date.now() - this.idleTtlMs
    let n = 0
    while (this.idleList.length > 0 && (this.idleList[0] as PooledSocket)[kSince] <= cutoff) {
      this.discard(this.idleList.shift() as PooledSocket, 'ttl')
      n++
    }
    if (n > 0) { this.failures = 0; this.fill() }
    this.armTtl()
  }

  private armTtl (): void {
    if (this.ttlTimer !== undefined || this.closed) return
    const oldest = this.idleList[0]
    if (oldest === undefined) return
    const ms = Math.max(0, oldest[kSince] + this.idleTtlMs - Date.now())
    this.ttlTimer = setTimeout(onTtlTimer, ms, this)
    this.ttlTimer.unref()
  }

  private fill (): void {
    if (this.closed || this.suspended || this.backoffTimer !== undefined) return
    // While dials fail, probe one at a time: parallel dials that fail at
    // different moments would each arm their own backoff step.
    const parallel = this.failures > 0 ? 1 : this.maxConnecting
    while (this.idleList.length + this.connecting < this.size && this.connecting < parallel) {
      this.connecting++
      this.counts.dials++
      const started = Date.now()
      this.dial(this.endpoint, this.connectTimeoutMs, (err, socket) => this.dialed(err, socket, started))
    }
  }

  private dialed (err: Error | null, socket: Socket | undefined, started: number): void {
    this.connecting--
    this.onDial?.(err, Date.now() - started)
    if (err !== null || socket === undefined) {
      this.counts.dialFailures++
      this.failed()
      return
    }
    const s = socket as PooledSocket
    if (this.closed || this.suspended || this.idleList.length >= this.size) {
      s.on('error', noop)
      s.destroy()
      return
    }
    // `failures` is not reset here: a server that closes or greets at once
    // connects fine every time. It resets once a socket proves usable (taken,
    // or idle past the early-close window).
    s[kPool] = this
    s[kSince] = Date.now()
    s[kChecking] = undefined
    s.unref()
    s.on('error', onIdleError)
    s.on('end', onIdleEnd)
    s.on('close', onIdleClose)
    // Starts libuv reading (so FIN/RST/bytes are seen) without consuming anything.
    s.on('readable', onIdleReadable)
    this.idleList.push(s)
    this.armTtl()
    this.fill()
  }

  private failed (): void {
    this.failures++
    if (this.closed || this.suspended || this.backoffTimer !== undefined) return
    const exp = Math.min(this.failures - 1, 20)
    const max = Math.min(this.backoffMaxMs, this.backoffBaseMs * 2 ** exp)
    // Full jitter in the upper half: spread, but never shorter than half the step.
    const ms = Math.floor(max / 2 + this.random() * (max / 2))
    this.backoffTimer = setTimeout(onBackoffTimer, ms, this)
    this.backoffTimer.unref()
  }

  /** @internal */
  backoffOver (): void {
    this.backoffTimer = undefined
    this.fill()
  }

  private clearBackoff (): void {
    if (this.backoffTimer !== undefined) clearTimeout(this.backoffTimer)
    this.backoffTimer = undefined
  }

}

function checkTurn1 (p: Pool, s: PooledSocket): void { setImmediate(checkTurn2, p, s) }
function checkTurn2 (p: Pool, s: PooledSocket): void { p.checkDone(s) }

function checkInt (what: string, v: number, min: number): number {
  if (!Number.isInteger(v) || v < min) throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `${what} must be an integer >= ${min}, got ${String(v)}`)
  return v
}

function bindMetrics (reg: Registry, p: Pool): PoolMetrics {
  const labels = { upstream: p.upstream, backend: p.key }
  const hits: Counter = reg.counter('kt_upstream_pool_hits_total', 'Client connections served by a warm pooled socket')
  const misses: Counter = reg.counter('kt_upstream_pool_misses_total', 'Client connections that found no warm socket and dialled')
  const ev: Counter = reg.counter('kt_upstream_pool_evictions_total', 'Idle pooled sockets closed, by cause')
  const idle = reg.gauge('kt_upstream_pool_idle', 'Warm idle sockets per backend')
  let set = registries.get(reg)
  if (set === undefined) {
    const pools = new Set<Pool>()
    set = pools
    registries.set(reg, pools)
    // One collector per registry, reading live pools at scrape time: the idle
    // count changes on every take and costs nothing between scrapes.
    idle.collect((put) => { for (const q of pools) put({ upstream: q.upstream, backend: q.key }, q.idle) })
  }
  set.add(p)
  p.registrySets.push(set)
  const evictions = new Map<EvictCause, { v: number }>()
  for (const c of EVICT_CAUSES) evictions.set(c, ev.bind({ ...labels, cause: c }))
  return { hits: hits.bind(labels), misses: misses.bind(labels), evictions, idle }
}
