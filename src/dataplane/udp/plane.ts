// The UDP data plane (issue #16): one bound datagram socket per UDP listener,
// a flow table keyed by the client's address and port, and one connected
// upstream socket per flow. docs/udp.md describes the model and its limits.
//
// - A flow is created by the first datagram of a client that passes the
//   source ranges and the caps; its backend is picked once (per-flow
//   balancing, client-IP affinity under client-ip-hash) and kept.
// - Every datagram the flow's upstream socket receives goes back to that
//   client, from the listener's own address, in the order received: any
//   number of replies, or none.
// - A flow ends when it was idle (no datagram either way) for the idle
//   timeout, when its listener or upstream leaves the table, or at shutdown;
//   then it is counted and logged once.
// - ICMP port unreachable from the backend (ECONNREFUSED on the connected
//   socket) marks the backend failed (passive health) and the flow's next
//   datagram goes to another backend.
//
// Flows count against the data plane's global connection cap (one fd each)
// and a per-listener flow cap; a datagram that would need a flow beyond
// either is dropped and counted, so a flood of one-datagram flows from many
// source ports cannot exhaust file descriptors.
//
// Over 500 lines: the UDP plane's flow table, per-flow upstream sockets,
// caps and apply-diff share the flows' state; each part reads the others'.

import { createSocket, type RemoteInfo, type Socket } from 'node:dgram'
import { isIP, type BlockList } from 'node:net'
import { errorCode, KtError } from '../../errors.js'
import type { Logger } from '../../observe/logger.js'
import type { Cell, Counter, Registry } from '../../observe/metrics.js'
import { listenerKey, type ListenerSpec, type UpstreamSpec } from '../../routing/types.js'
import { bindListener, configFor, type ListenerDiff } from '../apply-diff.js'
import type { DataplaneOptions } from '../context.js'
import type { Dialer, DialRequest } from '../dialer.js'
import { Upstream, type Backend, type BackendStatus, type ClientInfo } from '../upstream.js'
import { onLinkSource } from './source.js'

export interface UdpOptions {
  /**
   * A flow with no datagram either way for this long ends (0: never). 60 s by
   * default; docs/udp.md says why.
   */
  idleTimeoutMs: number
  /** Flows per UDP listener (each holds one fd); the global connection cap applies too. */
  maxFlowsPerListener: number
  /** Datagrams held per flow while its upstream socket connects; more are dropped and counted. */
  pendingMax: number
}

export const DEFAULT_UDP_IDLE_TIMEOUT_MS = 60_000

export const DEFAULT_UDP_OPTIONS: Readonly<UdpOptions> = Object.freeze({
  idleTimeoutMs: DEFAULT_UDP_IDLE_TIMEOUT_MS,
  maxFlowsPerListener: 10_000,
  pendingMax: 64,
})

/** What the UDP plane needs from its host: the shared connection count and cap (ListenerManager). */
export interface UdpHost {
  readonly opts: DataplaneOptions
  readonly log: Logger
  readonly accessLog: Logger
  readonly metrics: Registry
  /** Named dialers (`relay:<cluster>`); a UDP flow uses one when it offers dialDatagrams. */
  readonly dialers: ReadonlyMap<string, Dialer>
  activeCount: number
}

/**
 * A flow's datagram path through a dialer (the relay: src/relay/udp-client.ts,
 * the same shapes, structurally). send() is false when the datagram was dropped.
 */
export interface DatagramChannel {
  send (msg: Buffer): boolean
  close (): void
}
export interface DatagramHandlers {
  message (msg: Buffer): void
  /** The channel failed or ended; ECONNREFUSED means the backend refused (fail over). */
  error (err: NodeJS.ErrnoException): void
}
export interface DatagramDialer {
  dialDatagrams (req: DialRequest, handlers: DatagramHandlers): Promise<DatagramChannel>
}

function datagramDialer (d: Dialer | undefined): DatagramDialer | undefined {
  return d !== undefined && typeof (d as Partial<DatagramDialer>).dialDatagrams === 'function' ? d as unknown as DatagramDialer : undefined
}

export type FlowEnd = 'idle_timeout' | 'backend_refused' | 'no_backend' | 'removed' | 'shutdown' | 'error'
export type DropReason = 'max_flows' | 'source_denied' | 'no_backend' | 'pending_full' | 'send_error' | 'stray_reply' | 'relay_backlog'

const FLOW_ENDS: readonly FlowEnd[] = ['idle_timeout', 'backend_refused', 'no_backend', 'removed', 'shutdown', 'error']
const DROP_REASONS: readonly DropReason[] = ['max_flows', 'source_denied', 'no_backend', 'pending_full', 'send_error', 'stray_reply', 'relay_backlog']

/** The suffix that marks a UDP listener's key in apply results and snapshots, as in `-p 53:53/udp`. */
export const UDP_SUFFIX = '/udp'

export function isUdp (spec: { readonly protocol?: string }): boolean {
  return spec.protocol === 'udp'
}

interface UdpListenerConfig {
  readonly spec: ListenerSpec
  readonly upstream: Upstream | undefined
  readonly allow: BlockList | undefined
  readonly maxFlows: number
}

interface PlaneMetrics {
  flows: Counter
  datagrams: Counter
  bytes: Counter
  drops: Counter
}

/** The local address each backend's flows bind to, learnt from the first connected socket (no wildcard binds after that). */
const localFor = new WeakMap<Backend, string>()

class Flow {
  readonly key: string
  readonly listener: UdpListener
  readonly client: ClientInfo
  readonly upstream: Upstream
  backend: Backend | undefined
  sock: Socket | undefined
  /** Relayed flows: the datagram channel instead of a socket. */
  chan: DatagramChannel | undefined
  connected = false
  pending: Buffer[] = []
  tried: Set<Backend> | undefined
  lastActive: number
  readonly start: number
  timer: NodeJS.Timeout | undefined
  dgIn = 0
  dgOut = 0
  bytesIn = 0
  bytesOut = 0
  replied = false
  failovers = 0
  done = false

  constructor (listener: UdpListener, key: string, client: ClientInfo, upstream: Upstream, now: number) {
    this.listener = listener
    this.key = key
    this.client = client
    this.upstream = upstream
    this.lastActive = now
    this.start = now
  }
}

export class UdpListener {
  readonly plane: UdpPlane
  readonly key: string
  config: UdpListenerConfig
  readonly sock: Socket
  readonly flows = new Map<string, Flow>()
  port = 0
  name: string
  accepting = true
  // Counters over the listener's life (status), and metric cells bound once.
  flowsStarted = 0
  dgIn = 0
  dgOut = 0
  bytesIn = 0
  bytesOut = 0
  private drops!: Record<DropReason, Cell>
  private ends!: Record<FlowEnd, Cell>
  private dgInCell!: Cell
  private dgOutCell!: Cell
  private bytesInCell!: Cell
  private bytesOutCell!: Cell

  constructor (plane: UdpPlane, config: UdpListenerConfig) {
    this.plane = plane
    this.config = config
    this.key = listenerKey(config.spec) + UDP_SUFFIX
    this.name = this.key
    const v6 = isIP(config.spec.host) === 6
    // Replies go to client addresses taken from received datagrams: always IP
    // literals, so `literal` skips dns.lookup and its extra tick per datagram.
    this.sock = createSocket({ type: v6 ? 'udp6' : 'udp4', ipv6Only: v6, recvBufferSize: 4 << 20, sendBufferSize: 4 << 20, lookup: literal })
    this.sock.on('message', (msg, rinfo) => { this.fromClient(msg, rinfo) })
  }

  listen (): Promise<void> {
    const { host, port } = this.config.spec
    return new Promise((resolve, reject) => {
      const onErr = (err: Error): void => { reject(err) }
      this.sock.once('error', onErr)
      this.sock.bind({ address: host, port, exclusive: true }, () => {
        this.sock.removeListener('error', onErr)
        this.sock.on('error', (err: NodeJS.ErrnoException) => { this.plane.log.warn({ listener: this.name, code: err.code }, 'udp listener socket error; still serving') })
        this.port = this.sock.address().port
        this.name = listenerKey({ host, port: this.port }) + UDP_SUFFIX
        this.bindCells()
        resolve()
      })
    })
  }

  private bindCells (): void {
    const m = this.plane.m
    const l = { listener: this.name }
    this.drops = Object.fromEntries(DROP_REASONS.map((r) => [r, m.drops.bind({ ...l, reason: r })])) as Record<DropReason, Cell>
    this.ends = Object.fromEntries(FLOW_ENDS.map((r) => [r, m.flows.bind({ ...l, outcome: r })])) as Record<FlowEnd, Cell>
    this.dgInCell = m.datagrams.bind({ ...l, direction: 'client_to_upstream' })
    this.dgOutCell = m.datagrams.bind({ ...l, direction: 'upstream_to_client' })
    this.bytesInCell = m.bytes.bind({ ...l, direction: 'client_to_upstream' })
    this.bytesOutCell = m.bytes.bind({ ...l, direction: 'upstream_to_client' })
  }

  /** A datagram from a client: source ranges per datagram, then its flow (new or existing). */
  private fromClient (msg: Buffer, rinfo: RemoteInfo): void {
    const cfg = this.config
    const address = rinfo.address
    if (cfg.allow !== undefined && !cfg.allow.check(address, rinfo.family === 'IPv4' ? 'ipv4' : 'ipv6')) {
      this.drops.source_denied.inc()
      return
    }
    const key = `${address} ${rinfo.port}`
    let f = this.flows.get(key)
    const now = performance.now()
    if (f === undefined) {
      if (!this.accepting) return
      const up = cfg.upstream
      if (up === undefined) { this.drops.no_backend.inc(); return }
      const plane = this.plane
      if (this.flows.size >= cfg.maxFlows || plane.host.activeCount >= plane.host.opts.maxConnections) {
        this.drops.max_flows.inc()
        plane.capReached(this)
        return
      }
      f = new Flow(this, key, { address, port: rinfo.port, family: rinfo.family === 'IPv4' ? 4 : 6, localAddress: this.config.spec.host, localPort: this.port }, up, now)
      if (!this.open(f)) { this.drops.no_backend.inc(); return }
      this.flows.set(key, f)
      plane.host.activeCount++
      this.flowsStarted++
      this.armIdle(f)
    }
    f.lastActive = now
    f.dgIn++
    f.bytesIn += msg.length
    if (f.connected) {
      if (f.chan === undefined) (f.sock as Socket).send(msg)
      else if (!f.chan.send(msg)) this.drops.relay_backlog.inc()
    } else if (f.pending.length < this.plane.opts.pendingMax) {
      f.pending.push(msg)
    } else {
      this.drops.pending_full.inc()
    }
  }

  /** Pick a backend (skipping those this flow saw refuse) and open a connected socket to it. */
  private open (f: Flow): boolean {
    const b = f.upstream.pick(f.client, f.tried ?? NONE)
    if (b === undefined) return false
    f.backend = b
    f.upstream.acquired(b)
    const e = b.endpoint
    const via = f.upstream.spec.dialer
    if (via !== undefined && via !== 'direct') return this.openRelayed(f, b, via)
    const v6 = isIP(e.host) === 6
    const sock = createSocket({ type: v6 ? 'udp6' : 'udp4' })
    f.sock = sock
    f.connected = false
    const peerPort = e.port
    // The backend's address as the kernel writes it (canonical), once connected.
    let peer = ''
    sock.on('message', (msg, rinfo) => {
      // Only the backend: a datagram that reached the socket before connect() took effect is not a reply.
      if (rinfo.port !== peerPort || rinfo.address !== peer) { this.drops.stray_reply.inc(); return }
      this.fromUpstream(f, msg)
    })
    sock.on('error', (err: NodeJS.ErrnoException) => { this.upstreamError(f, sock, err) })
    // Bound before connect: never a wildcard, not even for a backend's first flow (source.ts).
    const local = localFor.get(b) ?? onLinkSource(e.host)
    const connect = (): void => {
      sock.connect(e.port, e.host, () => {
        if (f.sock !== sock) return
        f.connected = true
        peer = sock.remoteAddress().address
        if (!localFor.has(b)) localFor.set(b, sock.address().address)
        const q = f.pending
        f.pending = []
        for (const m of q) sock.send(m)
      })
    }
    if (local === undefined) connect()
    else sock.bind({ address: local, port: 0, exclusive: true }, connect)
    return true
  }

  /**
   * Through a dialer that carries datagrams (the relay): one channel per
   * flow, opened without a round trip; datagrams wait in `pending` until it
   * is there. A dialer without datagrams ends the flow (KT_ERR_UDP_RELAY).
   */
  private openRelayed (f: Flow, b: Backend, via: string): boolean {
    const e = b.endpoint
    const d = datagramDialer(this.plane.host.dialers.get(via))
    f.connected = false
    if (d === undefined) {
      this.plane.relayRefused(this, via)
      process.nextTick(() => { this.end(f, 'error', 'KT_ERR_UDP_RELAY') })
      return true
    }
    const req: DialRequest = { host: e.host, port: e.port, timeoutMs: this.plane.host.opts.connectTimeoutMs, source: { address: f.client.address, port: f.client.port } }
    let chan: DatagramChannel | undefined
    const fail = (err: NodeJS.ErrnoException): void => {
      if (f.done || f.backend !== b || (chan !== undefined && f.chan !== chan)) return
      this.relayFailed(f, err)
    }
    d.dialDatagrams(req, {
      message: (msg) => { if (f.chan === chan && chan !== undefined) this.fromUpstream(f, msg) },
      error: fail,
    }).then((c) => {
      chan = c
      if (f.done || f.backend !== b) { c.close(); return }
      f.chan = c
      f.connected = true
      const q = f.pending
      f.pending = []
      for (const m of q) if (!c.send(m)) this.drops.relay_backlog.inc()
    }, fail)
    return true
  }

  /**
   * A relayed flow's channel failed. The flow moves to another backend; only
   * ECONNREFUSED (the node's ICMP port unreachable) counts against this
   * backend's health: a relay refusal or a lost relay connection is not the
   * backend's doing.
   */
  private relayFailed (f: Flow, err: NodeJS.ErrnoException): void {
    const code = err.code ?? errorCode(err)
    if (code === 'KT_ERR_UDP_RELAY') {
      this.plane.relayRefused(this, f.upstream.spec.dialer ?? '', err.message)
      this.end(f, 'error', code)
      return
    }
    const chan = f.chan
    f.chan = undefined
    chan?.close()
    this.failover(f, err, code === 'ECONNREFUSED')
  }

  private fromUpstream (f: Flow, msg: Buffer): void {
    if (f.done) return
    f.lastActive = performance.now()
    f.dgOut++
    f.bytesOut += msg.length
    if (!f.replied) {
      f.replied = true
      f.backend?.health.connectSucceeded()
    }
    this.sock.send(msg, f.client.port, f.client.address)
  }

  private upstreamError (f: Flow, sock: Socket, err: NodeJS.ErrnoException): void {
    if (f.sock !== sock || f.done) { sock.close(); return }
    const b = f.backend
    if (err.code === 'ECONNREFUSED' && b !== undefined) {
      f.sock = undefined
      sock.close()
      this.failover(f, err)
      return
    }
    // Anything else (a failed lookup or connect, a send error): drop the
    // datagram, count it, keep the flow; a lookup failure ends the flow.
    if (!f.connected) {
      // The bind to the learnt local address failed (the address went away?): learn it again next time.
      if (b !== undefined) localFor.delete(b)
      this.end(f, 'error', errorCode(err))
      return
    }
    this.drops.send_error.inc()
  }

  /**
   * The flow's backend refused (ICMP port unreachable), or the relay refused
   * the flow: this flow moves on to another backend, and ends when none is
   * left. Only the backend's own refusal (`backendFailed`) counts toward its
   * passive ejection.
   */
  private failover (f: Flow, err: NodeJS.ErrnoException, backendFailed = true): void {
    const b = f.backend
    if (b === undefined) { this.end(f, 'error', errorCode(err)); return }
    if (backendFailed) b.health.connectFailed(err)
    f.upstream.release(b)
    ;(f.tried ??= new Set()).add(b)
    f.failovers++
    this.plane.log.debug({ listener: this.name, client: f.client.address, clientPort: f.client.port, backend: b.key, code: err.code }, 'udp backend refused; next datagram goes to another backend')
    f.backend = undefined
    if (!this.open(f)) this.end(f, 'backend_refused', errorCode(err))
  }

  private armIdle (f: Flow): void {
    const ms = this.plane.opts.idleTimeoutMs
    if (ms <= 0) return
    f.timer = setTimeout(onIdle, ms, f)
  }

  /** The idle timer fired: end the flow, or sleep again for the time left since its last datagram. */
  idleCheck (f: Flow): void {
    if (f.done) return
    const ms = this.plane.opts.idleTimeoutMs
    const left = f.lastActive + ms - performance.now()
    if (left > 1) f.timer = setTimeout(onIdle, Math.ceil(left), f)
    else this.end(f, 'idle_timeout')
  }

  end (f: Flow, why: FlowEnd, error?: string): void {
    if (f.done) return
    f.done = true
    if (f.timer !== undefined) clearTimeout(f.timer)
    f.sock?.close()
    f.sock = undefined
    f.chan?.close()
    f.chan = undefined
    f.pending = []
    if (f.backend !== undefined) f.upstream.release(f.backend)
    this.flows.delete(f.key)
    this.plane.host.activeCount--
    this.ends[why].inc()
    this.dgIn += f.dgIn
    this.dgOut += f.dgOut
    this.bytesIn += f.bytesIn
    this.bytesOut += f.bytesOut
    this.dgInCell.inc(f.dgIn)
    this.dgOutCell.inc(f.dgOut)
    this.bytesInCell.inc(f.bytesIn)
    this.bytesOutCell.inc(f.bytesOut)
    this.plane.flowEnded(f, why, error)
  }

  /** Counters including flows still open (for status and scrapes). */
  totals (): { dgIn: number, dgOut: number, bytesIn: number, bytesOut: number } {
    let dgIn = this.dgIn; let dgOut = this.dgOut; let bytesIn = this.bytesIn; let bytesOut = this.bytesOut
    for (const f of this.flows.values()) { dgIn += f.dgIn; dgOut += f.dgOut; bytesIn += f.bytesIn; bytesOut += f.bytesOut }
    return { dgIn, dgOut, bytesIn, bytesOut }
  }

  /** Stop receiving and release the port; open flows are ended by the caller. */
  stop (): void {
    if (!this.accepting) return
    this.accepting = false
    try { this.sock.close() } catch { /* already closed */ }
  }
}

const NONE: ReadonlySet<Backend> = new Set()

/** A lookup for addresses that are already IP literals: answers at once, without a tick. */
function literal (address: string, opts: unknown, cb: (err: NodeJS.ErrnoException | null, address: string, family: number) => void): void {
  cb(null, address, isIP(address))
}

function onIdle (f: Flow): void {
  f.listener.idleCheck(f)
}

export type UdpApplyResult = ListenerDiff

export interface UdpListenerSnapshot {
  key: string
  name: string
  port: number
  owner: string | undefined
  protocol: 'udp'
  active: number
  accepted: number
  bytesIn: number
  bytesOut: number
  datagramsIn: number
  datagramsOut: number
  routes: string[]
  default: string | undefined
  path: 'js'
  pathReason?: string
}

export class UdpPlane {
  readonly host: UdpHost
  readonly opts: UdpOptions
  readonly log: Logger
  readonly listeners = new Map<string, UdpListener>()
  readonly upstreams = new Map<string, Upstream>()
  readonly m: PlaneMetrics
  private lastCapWarning = 0

  constructor (host: UdpHost, options: Partial<UdpOptions> = {}) {
    this.host = host
    this.opts = Object.freeze({ ...DEFAULT_UDP_OPTIONS, ...options })
    this.log = host.log
    const r = host.metrics
    this.m = {
      flows: r.counter('kt_udp_flows_total', 'UDP flows ended, by listener and outcome.'),
      datagrams: r.counter('kt_udp_datagrams_total', 'UDP datagrams forwarded, by listener and direction (counted at flow end).'),
      bytes: r.counter('kt_udp_bytes_total', 'UDP payload bytes forwarded, by listener and direction (counted at flow end).'),
      drops: r.counter('kt_udp_drops_total', 'UDP datagrams dropped, by listener and reason (max_flows, source_denied, no_backend, pending_full, send_error, stray_reply, relay_backlog).'),
    }
    r.gauge('kt_udp_active_flows', 'Open UDP flows, by listener.').collect((set) => {
      for (const l of this.listeners.values()) set({ listener: l.name }, l.flows.size)
    })
  }

  get flowCount (): number {
    let n = 0
    for (const l of this.listeners.values()) n += l.flows.size
    return n
  }

  /** Apply the UDP listeners of a table (same diff rules as TCP: kept listeners are never rebound). */
  async apply (specs: readonly ListenerSpec[], upstreamDefaults: ConstructorParameters<typeof Upstream>[1]['defaults'], result: UdpApplyResult): Promise<void> {
    const wanted = new Map<string, UpstreamSpec>()
    for (const l of specs) if (l.default !== undefined) wanted.set(l.default.id, udpUpstreamSpec(l.default))
    for (const [id, spec] of wanted) {
      const up = this.upstreams.get(id)
      if (up === undefined) this.upstreams.set(id, new Upstream(spec, { dialers: this.host.dialers, metrics: this.host.metrics, logger: this.log, defaults: upstreamDefaults }))
      else if (JSON.stringify(up.spec) !== JSON.stringify(spec)) up.update(spec)
    }
    const seen = new Set<string>()
    const binds: Array<Promise<void>> = []
    for (const spec of specs) {
      const key = listenerKey(spec) + UDP_SUFFIX
      const config = configFor<UdpListenerConfig>(key, seen, result, () => this.buildConfig(spec))
      if (config === undefined) continue
      const existing = this.listeners.get(key)
      if (existing !== undefined) {
        existing.config = config
        // A flow whose upstream left keeps nothing to send to.
        for (const f of existing.flows.values()) if (f.upstream !== config.upstream) existing.end(f, 'removed')
        result.kept.push(key)
        continue
      }
      binds.push(bindListener(new UdpListener(this, config), key, spec.host, this.listeners, result))
    }
    await Promise.all(binds)
    for (const [key, l] of this.listeners) {
      if (seen.has(key)) continue
      this.listeners.delete(key)
      result.removed.push(key)
      l.stop()
      for (const f of [...l.flows.values()]) l.end(f, 'removed')
    }
    for (const [id, up] of this.upstreams) {
      if (wanted.has(id)) continue
      this.upstreams.delete(id)
      up.close()
    }
  }

  private buildConfig (spec: ListenerSpec): UdpListenerConfig {
    const dialer = spec.default?.dialer
    if (dialer !== undefined && dialer !== 'direct' && this.host.dialers.has(dialer) && datagramDialer(this.host.dialers.get(dialer)) === undefined) {
      // Datagrams sent straight to node IPs the host cannot reach would vanish without a word; refuse the listener instead.
      throw new KtError('KT_ERR_UDP_RELAY', `${listenerKey(spec)}/udp: its backends are reached through ${dialer}, which carries no UDP (docs/udp.md)`)
    }
    return Object.freeze({
      spec,
      upstream: spec.default === undefined ? undefined : this.upstreams.get(spec.default.id),
      allow: this.allowList(spec.sourceRanges),
      maxFlows: Math.min(spec.maxConnections ?? this.opts.maxFlowsPerListener, this.opts.maxFlowsPerListener),
    })
  }

  /** Set by the host: the same BlockList builder (and CIDR checks) TCP listeners use. */
  allowList: (cidrs: readonly string[] | undefined) => BlockList | undefined = () => undefined

  private lastRelayWarning = 0

  /** A flow could not go through its dialer (no such dialer, or a relay too old for UDP): said at most once a second. */
  relayRefused (l: UdpListener, via: string, why?: string): void {
    const now = Date.now()
    if (now - this.lastRelayWarning < 1000) return
    this.lastRelayWarning = now
    this.log.warn({ listener: l.name, dialer: via, code: 'KT_ERR_UDP_RELAY' }, why ?? `udp flow needs dialer ${via}, which is not there or carries no UDP`)
  }

  capReached (l: UdpListener): void {
    const now = Date.now()
    if (now - this.lastCapWarning < 1000) return
    this.lastCapWarning = now
    this.log.warn({ listener: l.name, flows: l.flows.size, active: this.host.activeCount }, 'udp flow cap reached: datagrams of new flows are dropped (kt_udp_drops_total{reason="max_flows"})')
  }

  flowEnded (f: Flow, why: FlowEnd, error: string | undefined): void {
    if (!this.host.opts.accessLog) return
    this.host.accessLog.info({
      listener: f.listener.name,
      protocol: 'udp',
      client: f.client.address,
      clientPort: f.client.port,
      upstream: f.upstream.id,
      backend: f.backend?.key,
      failovers: f.failovers,
      datagramsIn: f.dgIn,
      datagramsOut: f.dgOut,
      bytesIn: f.bytesIn,
      bytesOut: f.bytesOut,
      ms: Math.round(performance.now() - f.start),
      cause: why,
      error,
    }, 'udp flow ended')
  }

  /** Stop every listener and end every flow (UDP has nothing to drain). */
  close (): void {
    for (const l of this.listeners.values()) {
      l.stop()
      for (const f of [...l.flows.values()]) l.end(f, 'shutdown')
    }
    this.listeners.clear()
    for (const up of this.upstreams.values()) up.close()
    this.upstreams.clear()
  }

  snapshotListeners (): UdpListenerSnapshot[] {
    return [...this.listeners.values()].map((l) => {
      const t = l.totals()
      return {
        key: l.key,
        name: l.name,
        port: l.port,
        owner: l.config.spec.owner,
        protocol: 'udp' as const,
        active: l.flows.size,
        accepted: l.flowsStarted,
        bytesIn: t.bytesIn,
        bytesOut: t.bytesOut,
        datagramsIn: t.dgIn,
        datagramsOut: t.dgOut,
        routes: [],
        default: l.config.upstream?.id,
        path: 'js' as const,
        pathReason: 'udp (node:dgram)',
      }
    })
  }

  upstreamSnapshots (): Array<{ id: string, backends: BackendStatus[] }> {
    return [...this.upstreams.values()].map((u) => ({ id: u.id, backends: u.backends.map((b) => b.status()) }))
  }
}

/**
 * An upstream as UDP uses it: no warm sockets (they are TCP), and no TCP
 * connect check (a UDP port has nothing to connect to); an HTTP check (the
 * healthCheckNodePort under ETP Local) stays.
 */
export function udpUpstreamSpec (spec: UpstreamSpec): UpstreamSpec {
  const { health, proxyProtocol: _pp, ...rest } = spec
  return { ...rest, poolSize: 0, ...(health !== undefined && health.kind === 'http' ? { health } : {}) }
}
