// An Upstream is one set of interchangeable backends (one Service port). It
// picks a backend for each new client and hands back a connected socket:
// a warm one from the backend's pool when there is one, else a fresh dial,
// with the PROXY header (when configured) written first, before any client
// byte. Backend objects survive table updates for endpoints that stay, so
// their counters, pools and health are not reset by a reload.
//
// The parts live in their own modules (docs/upstream.md): balancer.ts
// (policies), health.ts (active checks, passive ejection, all-unhealthy),
// pool.ts (warm sockets), proxy-protocol.ts (headers).

import type { Socket } from 'node:net'
import { KtError } from '../errors.js'
import type { Logger } from '../observe/logger.js'
import type { Gauge, Histogram, HistogramCell, Registry } from '../observe/metrics.js'
import { endpointKey, type AllUnhealthyPolicy, type BalancePolicy, type Endpoint, type UpstreamSpec } from '../routing/types.js'
import { createBalancer, type Balanceable, type Balancer } from './balancer.js'
import { dialDirect, type DialCallback, type Dialer, type DialRequest } from './dialer.js'
import { HealthGroup, healthTimings, type BackendHealth, type HealthTimings } from './health.js'
import { effectivePoolSize, Pool, type PoolSizeSetting } from './pool.js'
import { encodeProxyHeader } from './proxy-protocol.js'

export interface ClientInfo {
  address: string
  port: number
  family: 4 | 6
  localAddress: string
  localPort: number
}

/**
 * A dial begun before the client's socket exists (Upstream.dialNow): the
 * backend picked for it, and the socket when its request is already on its
 * way, or the request for connect() to go on from.
 */
export interface EarlyDial {
  readonly upstream: Upstream
  readonly backend: Backend
  readonly req: DialRequest
  readonly socket: Socket | undefined
  /** How long the dial's synchronous part took, ms (the connect-latency histogram's figure for it). */
  readonly ms: number
  /** The dialer's synchronous part threw: connect() dials the ordinary way. */
  readonly failed?: unknown
}

/** A dialer with a synchronous part. */
type NowDialer = Dialer & { dialNow: NonNullable<Dialer['dialNow']> }

/** No backend excluded (a connection's first pick). */
export const NO_EXCLUDE: ReadonlySet<Backend> = new Set()

export interface UpstreamDefaults {
  connectTimeoutMs: number
  policy: BalancePolicy
  /** Warm sockets per backend when the spec does not say; 0 disables pooling; `auto`: see effectivePoolSize. */
  poolSize: PoolSizeSetting
  /** Idle TTL of warm sockets (default 30 s). */
  poolIdleTtlMs?: number
  /** Active-check and ejection timings; defaults are cloud-provider-kind's (2 s, 3 s, 2, 1). */
  health?: Partial<HealthTimings>
  /** When every backend is down and the spec does not say (default try-all). */
  allUnhealthy?: AllUnhealthyPolicy
}

export interface UpstreamContext {
  dialers: ReadonlyMap<string, Dialer>
  metrics: Registry
  logger: Logger
  defaults: UpstreamDefaults
  /** A backend went in or out of rotation (health checks, passive ejection): the native lane re-pushes its lists. */
  onHealthChange?: ((up: Upstream) => void) | undefined
}

/** Connect latency buckets, seconds: loopback (sub-ms) up to the 5 s connect timeout. */
export const CONNECT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]

export class Backend implements Balanceable {
  readonly endpoint: Endpoint
  readonly key: string
  /** Client connections using this backend (least-connections reads it). */
  active = 0
  readonly health: BackendHealth
  pool: Pool | undefined
  /** Set once the backend left the table; connections using it finish normally. */
  removed = false
  /** @internal metric labels, built once. */
  readonly labels: Readonly<Record<string, string>>
  /** @internal connect-latency histogram cell, bound lazily once. */
  connectCell: HistogramCell | undefined

  constructor (endpoint: Endpoint, health: BackendHealth, upstream: string) {
    this.endpoint = endpoint
    this.key = endpointKey(endpoint)
    this.health = health
    this.labels = Object.freeze({ upstream, backend: this.key })
  }

  /** In rotation: healthy per the active check and not ejected. */
  get available (): boolean {
    return this.health.available
  }

  /** Plain data for `kind-tunnel status` (ListenerManager.snapshot()). */
  status (): BackendStatus {
    const p = this.pool
    return {
      key: this.key,
      active: this.active,
      available: this.health.available,
      healthy: this.health.healthy,
      ejected: this.health.ejected,
      lastFailure: this.health.lastFailure,
      poolIdle: p?.idle ?? 0,
      poolHits: p?.hits ?? 0,
      poolMisses: p?.misses ?? 0,
    }
  }
}

export interface BackendStatus {
  key: string
  active: number
  available: boolean
  healthy: boolean
  ejected: boolean
  lastFailure: string | undefined
  poolIdle: number
  poolHits: number
  poolMisses: number
}

interface UpstreamMetrics {
  connect: Histogram
  active: Gauge
}

const liveByRegistry = new WeakMap<Registry, Set<Upstream>>()

function upstreamMetrics (reg: Registry, up: Upstream): UpstreamMetrics {
  const active = reg.gauge('kt_upstream_backend_active_connections', 'Client connections using the backend')
  let live = liveByRegistry.get(reg)
  if (live === undefined) {
    const set = new Set<Upstream>()
    live = set
    liveByRegistry.set(reg, set)
    // Read at scrape time: the count changes on every connection and costs nothing between scrapes.
    active.collect((put) => { for (const u of set) for (const b of u.backends) put(b.labels, b.active) })
  }
  live.add(up)
  return {
    connect: connectHistogram(reg),
    active,
  }
}

/** kt_upstream_connect_duration_seconds: JS dials observe it here, native lane connects are folded in by fastlane.ts. */
export function connectHistogram (reg: Registry): Histogram {
  return reg.histogram('kt_upstream_connect_duration_seconds', 'Upstream connect latency (warm-pool and client dials)', CONNECT_BUCKETS)
}

export class Upstream {
  readonly id: string
  spec: UpstreamSpec
  backends: Backend[] = []
  private balancer: Balancer<Backend>
  private readonly ctx: UpstreamContext
  private readonly group: HealthGroup
  private readonly m: UpstreamMetrics
  private poolSize: number
  private readonly idleTtlMs: number
  private closed = false

  constructor (spec: UpstreamSpec, ctx: UpstreamContext) {
    this.id = spec.id
    this.spec = spec
    this.ctx = ctx
    this.balancer = createBalancer<Backend>(spec.policy ?? ctx.defaults.policy)
    this.poolSize = effectivePoolSize(spec.poolSize, ctx.defaults.poolSize, spec.dialer)
    this.idleTtlMs = ctx.defaults.poolIdleTtlMs ?? 30_000
    this.m = upstreamMetrics(ctx.metrics, this)
    this.group = new HealthGroup({
      upstream: spec.id,
      check: spec.health,
      timings: healthTimings(ctx.defaults.health),
      dial: (e, ms, cb) => { this.dialEndpoint(e, ms, undefined, cb) },
      logger: ctx.logger,
      metrics: ctx.metrics,
      allUnhealthy: spec.allUnhealthy ?? ctx.defaults.allUnhealthy ?? 'try-all',
      onChange: (h) => { this.healthChanged(h) },
    })
    this.update(spec)
  }

  get policy (): BalancePolicy {
    return this.balancer.policy
  }

  /** Every backend is out of rotation (and there is at least one). */
  get allUnhealthy (): boolean {
    return this.group.allUnhealthy
  }

  /**
   * The code for a client that `pick` could not place: KT_ERR_ALL_UNHEALTHY
   * while every backend is down under `allUnhealthy: 'refuse'`, else
   * KT_ERR_NO_BACKEND.
   */
  get noBackendCode (): 'KT_ERR_ALL_UNHEALTHY' | 'KT_ERR_NO_BACKEND' {
    return this.group.allUnhealthy && this.group.allUnhealthyPolicy === 'refuse' ? 'KT_ERR_ALL_UNHEALTHY' : 'KT_ERR_NO_BACKEND'
  }

  update (spec: UpstreamSpec): void {
    if (this.closed) return
    const prev = this.spec
    this.spec = spec
    const policy = spec.policy ?? this.ctx.defaults.policy
    if (policy !== this.balancer.policy) this.balancer = createBalancer<Backend>(policy)
    this.group.setCheck(spec.health)
    this.group.allUnhealthyPolicy = spec.allUnhealthy ?? this.ctx.defaults.allUnhealthy ?? 'try-all'
    const poolSize = effectivePoolSize(spec.poolSize, this.ctx.defaults.poolSize, spec.dialer)
    const dialerChanged = (prev.dialer ?? 'direct') !== (spec.dialer ?? 'direct')
    this.poolSize = poolSize

    const old = new Map<string, Backend>()
    for (const b of this.backends) old.set(b.key, b)
    const next: Backend[] = []
    for (const e of spec.endpoints) {
      const key = endpointKey(e)
      if (next.some((b) => b.key === key)) continue // a duplicate endpoint is one backend
      let b = old.get(key)
      if (b !== undefined) {
        old.delete(key)
        if (dialerChanged) b.pool?.flush()
        this.sizePool(b)
      } else {
        b = new Backend(e, this.group.add(e), this.id)
        this.sizePool(b)
      }
      next.push(b)
    }
    for (const b of old.values()) this.retire(b)
    this.backends = next
    this.balancer.setBackends(next)
  }

  private sizePool (b: Backend): void {
    if (this.poolSize === 0) {
      b.pool?.close()
      b.pool = undefined
      return
    }
    if (b.pool !== undefined) { b.pool.resize(this.poolSize); return }
    const pool = new Pool(b.endpoint, {
      size: this.poolSize,
      idleTtlMs: this.idleTtlMs,
      connectTimeoutMs: this.ctx.defaults.connectTimeoutMs,
      dial: (e, ms, cb) => { this.dialEndpoint(e, ms, undefined, cb) },
      onDial: (err, ms) => { this.dialed(b, err, ms) },
      upstream: this.id,
      metrics: this.ctx.metrics,
    })
    b.pool = pool
    if (b.available) pool.start()
    else pool.suspend()
  }

  private retire (b: Backend): void {
    b.removed = true
    b.pool?.close()
    b.pool = undefined
    this.group.remove(b.health)
    this.m.active.delete(b.labels)
  }

  private healthChanged (h: BackendHealth): void {
    this.ctx.onHealthChange?.(this)
    const b = this.backends.find((x) => x.health === h)
    const pool = b?.pool
    if (pool === undefined) return
    // An unhealthy backend's warm sockets go; they come back with it.
    if (h.available) pool.resume()
    else pool.suspend()
  }

  pick (client: ClientInfo, exclude: ReadonlySet<Backend>): Backend | undefined {
    if (this.closed) return undefined
    const b = this.balancer.pick(client.address, exclude)
    if (b !== undefined) return b
    // Every backend down: try them anyway unless told to refuse (docs/upstream.md).
    if (this.group.allUnhealthy && this.group.allUnhealthyPolicy === 'try-all') return this.balancer.pick(client.address, exclude, true)
    return undefined
  }

  /** The dialer whose synchronous part (Dialer.dialNow) a dial here may begin early: none with warm backend pools, or direct. */
  private nowDialer (): NowDialer | undefined {
    const name = this.spec.dialer
    if (this.closed || this.poolSize !== 0 || name === undefined || name === 'direct') return undefined
    const d = this.ctx.dialers.get(name)
    return d?.dialNow === undefined ? undefined : d as NowDialer
  }

  /** Whether dialNow() can begin anything here (checked before the client's address is read). */
  get dialsNow (): boolean {
    return this.nowDialer() !== undefined
  }

  /**
   * Pick a backend and begin the dial to it at once (Dialer.dialNow), for a
   * listener that knows its client's address but has no socket for it yet
   * (listener.ts hookEarlyDial). Undefined: nothing begun, nothing picked.
   * connect() with the result takes it over, backend and all, so the
   * balancer picks once a connection.
   */
  dialNow (client: ClientInfo, timeoutMs: number): EarlyDial | undefined {
    const dialer = this.nowDialer()
    if (dialer === undefined) return undefined
    const backend = this.pick(client, NO_EXCLUDE)
    if (backend === undefined) return undefined
    const req = dialRequest(backend.endpoint, timeoutMs, client)
    const started = performance.now()
    try {
      return { upstream: this, backend, req, socket: dialer.dialNow(req), ms: performance.now() - started }
    } catch (err) {
      return { upstream: this, backend, req, socket: undefined, ms: 0, failed: err }
    }
  }

  /** `early`: the dial dialNow() began (for this backend), taken over: its socket, or its request. */
  connect (backend: Backend, client: ClientInfo, timeoutMs: number, cb: (err: Error | null, socket?: Socket) => void, early?: EarlyDial): void {
    if (this.closed) { early?.socket?.destroy(); process.nextTick(cb, new KtError('KT_ERR_NO_BACKEND', `upstream ${this.id} is closed`)); return }
    if (early !== undefined) {
      const s = early.socket
      if (s === undefined) { this.dialFor(backend, client, timeoutMs, cb, early.req); return }
      this.dialed(backend, null, early.ms)
      process.nextTick(() => { this.handOver(s, client, cb) })
      return
    }
    const pool = backend.pool
    if (pool !== undefined) {
      pool.acquire((s) => {
        if (s !== undefined) this.handOver(s, client, cb)
        else this.dialFor(backend, client, timeoutMs, cb)
      })
      return
    }
    this.dialFor(backend, client, timeoutMs, cb)
  }

  private dialFor (backend: Backend, client: ClientInfo, timeoutMs: number, cb: (err: Error | null, socket?: Socket) => void, req?: DialRequest): void {
    const started = performance.now()
    this.dialEndpoint(backend.endpoint, timeoutMs, client, (err, s) => {
      this.dialed(backend, err, performance.now() - started)
      if (err !== null || s === undefined) { cb(err ?? new KtError('KT_ERR_CONNECT_FAILED')); return }
      this.handOver(s, client, cb)
    }, req)
  }

  /** Connect outcome of any dial to a backend: passive health and the latency histogram. */
  private dialed (b: Backend, err: Error | null, ms: number): void {
    if (b.removed) return
    if (err === null) {
      ;(b.connectCell ??= this.m.connect.bind(b.labels)).observe(ms / 1000)
      b.health.connectSucceeded()
    } else {
      b.health.connectFailed(err)
    }
  }

  /** The PROXY header goes first, before the caller writes any client byte. */
  private handOver (s: Socket, client: ClientInfo, cb: (err: Error | null, socket?: Socket) => void): void {
    const v = this.spec.proxyProtocol
    if (v !== undefined) {
      s.write(encodeProxyHeader(v, { sourceAddress: client.address, sourcePort: client.port, destAddress: client.localAddress, destPort: client.localPort }))
    }
    cb(null, s)
  }

  private dialEndpoint (e: Endpoint, timeoutMs: number, client: ClientInfo | undefined, cb: DialCallback, req?: DialRequest): void {
    const name = this.spec.dialer
    if (name === undefined || name === 'direct') {
      dialDirect(e.host, e.port, timeoutMs, cb)
      return
    }
    const dialer = this.ctx.dialers.get(name)
    if (dialer === undefined) { process.nextTick(cb, new KtError('KT_ERR_NO_BACKEND', `unknown dialer ${name}`)); return }
    dialer.dial(req ?? dialRequest(e, timeoutMs, client)).then((s) => { cb(null, s) }, (err: Error) => { cb(err) })
  }

  /** Called when a connection to this backend is established. */
  acquired (backend: Backend): void {
    backend.active++
  }

  /** Called when a client connection that used this backend has ended. */
  release (backend: Backend): void {
    if (backend.active > 0) backend.active--
  }

  /** No new picks; warm sockets and health checks stop. Connections in flight finish on their own. */
  close (): void {
    if (this.closed) return
    this.closed = true
    for (const b of this.backends) {
      b.pool?.close()
      b.pool = undefined
      this.m.active.delete(b.labels)
    }
    this.group.close()
    liveByRegistry.get(this.ctx.metrics)?.delete(this)
  }
}

function dialRequest (e: Endpoint, timeoutMs: number, client: ClientInfo | undefined): DialRequest {
  return client === undefined
    ? { host: e.host, port: e.port, timeoutMs }
    : { host: e.host, port: e.port, timeoutMs, source: { address: client.address, port: client.port } }
}
