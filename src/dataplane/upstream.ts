// An Upstream is one set of interchangeable backends (one Service port). It
// picks a backend for each new client and hands back a connected socket.
// Backend objects survive table updates for endpoints that stay, so their
// counters (and later pools and health) are not reset by a reload.

import type { Socket } from 'node:net'
import type { Logger } from '../observe/logger.js'
import type { Registry } from '../observe/metrics.js'
import { KtError } from '../errors.js'
import { endpointKey, type BalancePolicy, type Endpoint, type UpstreamSpec } from '../routing/types.js'
import { dialDirect, type Dialer } from './dialer.js'

export interface ClientInfo {
  address: string
  port: number
  family: 4 | 6
  localAddress: string
  localPort: number
}

export interface UpstreamDefaults {
  connectTimeoutMs: number
  policy: BalancePolicy
  poolSize: number
}

export interface UpstreamContext {
  dialers: ReadonlyMap<string, Dialer>
  metrics: Registry
  logger: Logger
  defaults: UpstreamDefaults
}

export class Backend {
  readonly endpoint: Endpoint
  readonly key: string
  active = 0
  constructor (endpoint: Endpoint) {
    this.endpoint = endpoint
    this.key = endpointKey(endpoint)
  }
}

export class Upstream {
  readonly id: string
  spec: UpstreamSpec
  backends: Backend[] = []
  private rr = 0
  private readonly ctx: UpstreamContext
  private closed = false

  constructor (spec: UpstreamSpec, ctx: UpstreamContext) {
    this.id = spec.id
    this.spec = spec
    this.ctx = ctx
    this.update(spec)
  }

  get policy (): BalancePolicy {
    return this.spec.policy ?? this.ctx.defaults.policy
  }

  update (spec: UpstreamSpec): void {
    this.spec = spec
    const old = new Map(this.backends.map((b) => [b.key, b]))
    this.backends = spec.endpoints.map((e) => old.get(endpointKey(e)) ?? new Backend(e))
  }

  pick (_client: ClientInfo, exclude: ReadonlySet<Backend>): Backend | undefined {
    const list = this.backends
    const n = list.length
    if (n === 0) return undefined
    if (this.policy === 'least-connections') {
      let best: Backend | undefined
      // Start at a rotating offset so ties spread instead of piling on the first.
      const start = this.rr++ % n
      for (let i = 0; i < n; i++) {
        const b = list[(start + i) % n] as Backend
        if (exclude.has(b)) continue
        if (best === undefined || b.active < best.active) best = b
      }
      return best
    }
    for (let i = 0; i < n; i++) {
      const b = list[this.rr++ % n] as Backend
      if (!exclude.has(b)) return b
    }
    return undefined
  }

  connect (backend: Backend, client: ClientInfo, timeoutMs: number, cb: (err: Error | null, socket?: Socket) => void): void {
    if (this.closed) { cb(new KtError('KT_ERR_NO_BACKEND', `upstream ${this.id} is closed`)); return }
    const dialerName = this.spec.dialer
    if (dialerName === undefined || dialerName === 'direct') {
      dialDirect(backend.endpoint.host, backend.endpoint.port, timeoutMs, cb)
      return
    }
    const dialer = this.ctx.dialers.get(dialerName)
    if (dialer === undefined) { cb(new KtError('KT_ERR_NO_BACKEND', `unknown dialer ${dialerName}`)); return }
    dialer.dial({ host: backend.endpoint.host, port: backend.endpoint.port, timeoutMs, source: { address: client.address, port: client.port } })
      .then((s) => cb(null, s), (err: Error) => cb(err))
  }

  /** Called when a connection to this backend is established. */
  acquired (backend: Backend): void {
    backend.active++
  }

  /** Called when a client connection that used this backend has ended. */
  release (backend: Backend): void {
    backend.active--
  }

  close (): void {
    this.closed = true
  }
}
