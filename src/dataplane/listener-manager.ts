// The ListenerManager applies RouteTables as diffs: new listeners are bound,
// removed ones stop accepting and drain for a bounded time, and listeners
// that stay are never rebound: only their routing config object is swapped.
// Applying the same table twice changes nothing.

import { BlockList } from 'node:net'
import { formatIp, parseCidr } from '../routing/cidr.js'
import { KtError } from '../errors.js'
import type { Logger } from '../observe/logger.js'
import type { Registry } from '../observe/metrics.js'
import type { NativeSplicer } from './native/index.js'
import { HostMatcher } from '../routing/hostmatch.js'
import { listenerKey, type ListenerSpec, type RouteTable, type UpstreamSpec } from '../routing/types.js'
import { bindListener, configFor, type ListenerDiff } from './apply-diff.js'
import { DEFAULT_DATAPLANE_OPTIONS, type DataplaneContext, type DataplaneMetrics, type DataplaneOptions, type ListenerConfig, type RouteTarget } from './context.js'
import type { Dialer } from './dialer.js'
import { createFastLane, type FastLane } from './fastlane.js'
import { Listener } from './listener.js'
import { Upstream, type BackendStatus } from './upstream.js'
import { isUdp, UdpPlane, type UdpListenerSnapshot, type UdpOptions } from './udp/plane.js'

export { DEFAULT_DATAPLANE_OPTIONS, type DataplaneOptions } from './context.js'

export interface ApplyResult extends ListenerDiff {
  version: number
}

export interface ListenerManagerInit {
  logger: Logger
  metrics: Registry
  options?: Partial<DataplaneOptions>
  dialers?: ReadonlyMap<string, Dialer>
  /** The native splice fast path; absent means the pure-JS splice for every connection. */
  splicer?: NativeSplicer | undefined
  /**
   * The native accept+connect lane for plain L4 listeners (needs the splicer):
   * auto uses it where eligible. Default off, or KT_NATIVE_ACCEPT=1; KT_NATIVE_ACCEPT=0 always disables.
   */
  nativeAccept?: 'auto' | 'off' | undefined
  /** UDP listeners (ListenerSpec.protocol 'udp'): idle timeout and flow cap (udp/plane.ts). */
  udp?: Partial<UdpOptions> | undefined
}

export class ListenerManager implements DataplaneContext {
  readonly opts: DataplaneOptions
  readonly log: Logger
  readonly accessLog: Logger
  readonly listeners = new Map<string, Listener>()
  readonly upstreams = new Map<string, Upstream>()
  readonly dialers: ReadonlyMap<string, Dialer>
  readonly splicer: NativeSplicer | undefined
  readonly lane: FastLane | undefined
  /** UDP listeners and their flows (issue #16). */
  readonly udp: UdpPlane
  readonly metrics: Registry
  readonly m: DataplaneMetrics

  activeCount = 0
  version = -1
  /** Removed listeners with connections still open (reported until drained). */
  private readonly draining = new Set<Listener>()
  private closing = false
  private applying: Promise<unknown> = Promise.resolve()


  constructor (init: ListenerManagerInit) {
    this.opts = Object.freeze({ ...DEFAULT_DATAPLANE_OPTIONS, ...init.options })
    this.log = init.logger.child({ module: 'dataplane' })
    this.accessLog = init.logger.child({ module: 'access' })
    this.dialers = init.dialers ?? new Map()
    this.splicer = init.splicer
    this.metrics = init.metrics
    const r = init.metrics
    // Registered first so that a scrape folds the native lane's counters in before it renders the rest.
    r.gauge('kt_native_accept_listeners', 'Listeners accepted natively (issue #8 fast lane); 0 when the lane is off.').collect((set) => {
      this.lane?.sync()
      set(undefined, this.lane?.listeners.size ?? 0)
    })
    this.m = {
      connections: r.counter('kt_connections_total', 'Client connections closed or refused, by listener and outcome.'),
      routeDecisions: r.counter('kt_route_decisions_total', 'Routing decisions on peeking listeners, by outcome (sni, host, default, no_route, peek_timeout, too_large, not_tls_or_http).'),
      accepted: r.counter('kt_connections_accepted_total', 'Client connections accepted, by listener.'),
      bytes: r.counter('kt_bytes_total', 'Bytes spliced, by listener and direction (counted at close).'),
      acceptErrors: r.counter('kt_accept_errors_total', 'accept() failures such as EMFILE, by listener and code.'),
      connectErrors: r.counter('kt_upstream_connect_errors_total', 'Upstream connect failures, by upstream, backend and code.'),
      nativeFallbacks: r.counter('kt_native_fallbacks_total', 'Connections the native splicer refused (spliced in JS instead).').bind(),
      nativeDropped: r.counter('kt_native_events_dropped_total', 'Records of the native accept lane (connect errors, close records) dropped because they could not be queued for JS.').bind(),
      active: r.gauge('kt_active_connections', 'Open client connections, by listener.'),
      duration: r.histogram('kt_connection_duration_seconds', 'Client connection lifetime.', [0.001, 0.01, 0.1, 1, 10, 60, 600, 3600]),
    }
    // Listeners in the table, and removed ones until they have drained: a
    // series goes once its listener is gone (issue 15: /metrics grew with
    // every listener that ever existed).
    this.m.active.collect((set) => {
      for (const l of this.listeners.values()) set({ listener: l.name }, l.activeCount)
      for (const l of this.draining) {
        if (l.activeCount === 0) this.draining.delete(l)
        else set({ listener: l.name }, l.activeCount)
      }
    })
    this.lane = createFastLane(this, this.splicer, init.nativeAccept)
    this.udp = new UdpPlane(this, init.udp)
    this.udp.allowList = blockList
  }

  upstreamOf (id: string): Upstream | undefined {
    return this.upstreams.get(id)
  }

  /** Apply a table. Serialised: concurrent calls run one after another. */
  apply (table: RouteTable): Promise<ApplyResult> {
    const run = this.applying.then(() => this.applyNow(table))
    this.applying = run.catch(() => {})
    return run
  }

  private async applyNow (full: RouteTable): Promise<ApplyResult> {
    if (this.closing) throw new KtError('KT_ERR_LISTEN', 'the data plane is shutting down')
    const result: ApplyResult = { version: full.version, bound: [], kept: [], removed: [], failed: [] }
    // UDP listeners go to their own plane; everything below is TCP.
    await this.udp.apply(full.listeners.filter(isUdp), { connectTimeoutMs: this.opts.connectTimeoutMs, policy: this.opts.policy, poolSize: 0 }, result)
    const table: RouteTable = { version: full.version, listeners: full.listeners.filter((l) => !isUdp(l)) }

    // 1. Upstreams: create or update every one the table references.
    const wanted = new Map<string, UpstreamSpec>()
    for (const l of table.listeners) {
      if (l.default !== undefined) wanted.set(l.default.id, l.default)
      for (const r of l.routes) wanted.set(r.upstream.id, r.upstream)
    }
    for (const [id, spec] of wanted) {
      const up = this.upstreams.get(id)
      if (up === undefined) {
        this.upstreams.set(id, new Upstream(spec, { dialers: this.dialers, metrics: this.metrics, logger: this.log, onHealthChange: (u) => { this.lane?.healthChanged(u) }, defaults: { connectTimeoutMs: this.opts.connectTimeoutMs, policy: this.opts.policy, poolSize: this.opts.poolSize } }))
      } else if (!sameJSON(up.spec, spec)) {
        up.update(spec)
      }
    }

    // 2. Listeners: swap configs of kept ones, bind new ones.
    const seen = new Set<string>()
    const binds: Array<Promise<void>> = []
    for (const spec of table.listeners) {
      const key = listenerKey(spec)
      const config = configFor<ListenerConfig>(key, seen, result, () => this.buildConfig(spec))
      if (config === undefined) continue
      const existing = this.listeners.get(key)
      if (existing !== undefined) {
        existing.config = config
        // A lane listener handed back to JS: applied once JS listens again.
        const taken = existing.reconfigured()
        if (taken !== undefined) binds.push(taken)
        result.kept.push(key)
        continue
      }
      binds.push(bindListener(new Listener(this, config, (view) => this.lane?.adopt(view)), key, spec.host, this.listeners, result))
    }
    await Promise.all(binds)

    // 3. Removed listeners stop accepting and drain for a bounded time.
    for (const [key, l] of this.listeners) {
      if (seen.has(key)) continue
      this.listeners.delete(key)
      result.removed.push(key)
      for (const p of l.paths) { p.stop(); p.drain(this.opts.drainTimeoutMs) }
      if (l.activeCount > 0) this.draining.add(l)
    }

    // 4. Upstreams no longer referenced: no new picks; their connections drain.
    for (const [id, up] of this.upstreams) {
      if (wanted.has(id)) continue
      this.upstreams.delete(id)
      up.close()
      for (const l of this.listeners.values()) {
        for (const c of l.active) {
          if (c.upstream !== up || c.drainTimer !== undefined || c.done) continue
          c.drainTimer = setTimeout(() => { c.abort() }, this.opts.drainTimeoutMs)
          c.drainTimer.unref()
        }
      }
    }
    this.version = table.version
    if (result.failed.length > 0) {
      for (const f of result.failed) this.log.error({ listener: f.key, code: f.code }, f.message)
    }
    return result
  }

  private buildConfig (spec: ListenerSpec): ListenerConfig {
    const defaultUpstream = spec.default === undefined ? undefined : this.upstreams.get(spec.default.id)
    let matcher: HostMatcher<RouteTarget> | undefined
    if (spec.routes.length > 0) {
      const entries: Array<readonly [string, RouteTarget]> = []
      for (const r of spec.routes) {
        const target: RouteTarget = Object.freeze({ upstream: this.upstreams.get(r.upstream.id) as Upstream, allow: blockList(r.sourceRanges) })
        for (const n of r.names) entries.push([n, target])
      }
      matcher = new HostMatcher(entries)
    }
    const allow = blockList(spec.sourceRanges)
    return Object.freeze({
      spec,
      peek: matcher !== undefined,
      matcher,
      defaultUpstream,
      allow,
      maxConnections: spec.maxConnections ?? this.opts.maxConnectionsPerListener,
    })
  }

  private lastFdWarning = 0
  /** Out of file descriptors: warn at most once a second; the connection itself is counted as a connect failure. */
  fdExhausted (code: string): void {
    const now = Date.now()
    if (now - this.lastFdWarning < 1000) return
    this.lastFdWarning = now
    this.log.warn({ code, active: this.activeCount }, `out of file descriptors (${code}): new connections fail until some close; raise ulimit -n or lower --max-connections`)
  }

  get connectionCount (): number {
    this.lane?.sync()
    return this.activeCount
  }

  /**
   * Graceful stop: stop accepting everywhere, let in-flight connections
   * finish within `drainMs`, then reset what is left.
   */
  async close (drainMs = this.opts.drainTimeoutMs): Promise<void> {
    this.closing = true
    await this.applying
    const ls = [...this.listeners.values()]
    this.listeners.clear()
    for (const l of ls) l.stopAccepting()
    this.udp.close()
    const deadline = Date.now() + drainMs
    while (this.connectionCount > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(50, Math.max(1, deadline - Date.now()))))
    }
    for (const l of ls) for (const p of l.paths) p.abort()
    // Let aborted sockets report their close.
    const hard = Date.now() + 1000
    while (this.connectionCount > 0 && Date.now() < hard) await new Promise((resolve) => setTimeout(resolve, 5))
    for (const up of this.upstreams.values()) up.close()
    this.upstreams.clear()
    this.lane?.close()
  }

  /** A plain snapshot for status: listeners, upstreams, backends. */
  /**
   * Which path carries a listener's connections: `native` (the accept lane:
   * accept, peek, connect and splice on the addon's threads) or `js`, and why
   * it is not native, for `kind-tunnel status`.
   */
  private pathOf (l: Listener): { path: 'native' | 'js', pathReason?: string } {
    if (l.lane !== undefined && !l.lane.stopped) return { path: 'native' }
    if (this.lane === undefined) return { path: 'js', pathReason: this.splicer === undefined ? 'native addon off or not built' : 'native accept lane off' }
    return { path: 'js', pathReason: this.lane.ineligibility(l) ?? 'handed back' }
  }

  snapshot (): DataplaneSnapshot {
    this.lane?.sync()
    return {
      version: this.version,
      active: this.activeCount,
      listeners: [...this.listeners.values()].map((l) => ({
        key: l.key,
        name: l.name,
        port: l.port,
        owner: l.config.spec.owner,
        active: l.activeCount,
        accepted: l.accepted.v,
        bytesIn: l.bytesIn.v,
        bytesOut: l.bytesOut.v,
        routes: l.config.spec.routes.flatMap((r) => r.names),
        default: l.config.defaultUpstream?.id,
        ...this.pathOf(l),
      })).concat(this.udp.snapshotListeners()),
      upstreams: [...this.upstreams.values()].map((u) => ({
        id: u.id,
        backends: u.backends.map((b) => b.status()),
      })).concat(this.udp.upstreamSnapshots()),
    }
  }
}

export interface DataplaneSnapshot {
  version: number
  active: number
  listeners: Array<{ key: string, name: string, port: number, owner: string | undefined, active: number, accepted: number, bytesIn: number, bytesOut: number, routes: string[], default: string | undefined, path: 'native' | 'js', pathReason?: string } | UdpListenerSnapshot>
  upstreams: Array<{ id: string, backends: BackendStatus[] }>
}

function sameJSON (a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b)
}

/** An allowlist of CIDRs, or undefined when there are none (everyone allowed). */
function blockList (cidrs: readonly string[] | undefined): BlockList | undefined {
  if (cidrs === undefined || cidrs.length === 0) return undefined
  const list = new BlockList()
  for (const cidr of cidrs) addCidr(list, cidr)
  return list
}

function addCidr (list: BlockList, cidr: string): void {
  // routing/cidr.ts: no zone index (`%eth0`, BlockList has none), a decimal
  // prefix; the native lane is handed the canonical text (fastlane.ts lanePlan).
  const c = parseCidr(cidr, { what: 'source range', bare: true })
  const addr = formatIp(c.family, c.base)
  list.addSubnet(addr, c.prefix, c.family === 4 ? 'ipv4' : 'ipv6')
  // An IPv4 range also admits IPv4-mapped IPv6 clients (dual-stack sockets).
  if (c.family === 4) list.addSubnet(`::ffff:${addr}`, 96 + c.prefix, 'ipv6')
}
