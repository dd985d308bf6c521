// A Listener owns one bound net.Server. Its routing config is an immutable
// object swapped atomically on reload: connections keep the config they were
// accepted with, new ones see the new one, and the socket is never rebound.
// Its connections are accepted by one of two paths behind one interface
// (context.ts AcceptPath): the JS path here (the net.Server), or the native
// lane (fastlane.ts), which takes the socket when the listener is eligible.

import { BlockList, createServer, isIPv4, type Server, type Socket } from 'node:net'
import type { Cell, HistogramCell } from '../observe/metrics.js'
import { isUnspecifiedAddress, listenerKey } from '../routing/types.js'
import { logAccess } from './access-log.js'
import { Connection } from './connection.js'
import type { AcceptPath, ClosedConnection, DataplaneContext, DataplaneOptions, ListenerConfig, ListenerView } from './context.js'
import type { LaneListener } from './fastlane.js'
import type { ClientInfo, EarlyDial } from './upstream.js'
import { CONN_OUTCOMES, ROUTE_OUTCOMES, type ConnOutcome, type RouteOutcome } from './vocab.js'

export type { ListenerConfig, RouteTarget } from './context.js'

/** Takes a freshly bound listener onto the native lane, or not (undefined). */
export type LaneAdopter = (l: ListenerView) => LaneListener | undefined

const kListener = Symbol('kt.listener')
const kEarlyHooked = Symbol('kt.earlyHooked')
interface ListenerServer extends Server { [kListener]: Listener }

/** The accepted client's libuv handle, as Node's server handle passes it before it builds the Socket. */
interface PeerHandle { getpeername (out: { address?: string, port?: number }): number }
/** The listening socket's handle (net.Server's _handle): Node's accept callback. */
interface ServerHandle { onconnection: (this: ServerHandle, status: number, client?: PeerHandle) => unknown, [kEarlyHooked]?: true }
/** A dial begun for the client Node is about to hand over (hookEarlyDial). */
interface PendingEarly { readonly handle: PeerHandle, readonly dial: EarlyDial }

export class Listener implements ListenerView {
  readonly key: string
  readonly ctx: DataplaneContext
  readonly opts: DataplaneOptions
  readonly server: ListenerServer
  config: ListenerConfig
  readonly active = new Set<Connection>()
  accepting = true
  /** Bound port (differs from spec.port when the spec asked for port 0). */
  port = 0
  /** The bound address (`127.0.0.1:43125`): the label in metrics and logs. */
  name: string
  // Metric cells, bound once the real address is known (see listen()).
  outcomeCells!: Record<ConnOutcome, Cell>
  routeCells!: Record<RouteOutcome, Cell>
  accepted!: Cell
  bytesIn!: Cell
  bytesOut!: Cell
  /** kt_connection_duration_seconds (no labels: one series for every listener). */
  private duration!: HistogramCell
  private lastAcceptErrorLog = 0
  /** The one address the listener is bound to (undefined on a wildcard): its connections' local address. */
  private boundAddress: string | undefined
  /** Set when the native accept lane took this listener (fastlane.ts); JS then accepts nothing on it. */
  lane: LaneListener | undefined
  /** The JS accept path: this listener's net.Server and its connections. */
  readonly js: AcceptPath
  private readonly adoptLane: LaneAdopter | undefined
  /** Begun by hookEarlyDial for the connection Node is handing over now; accept() takes it. */
  private pendingEarly: PendingEarly | undefined
  private earlyDialWarned = false

  constructor (ctx: DataplaneContext, config: ListenerConfig, adoptLane?: LaneAdopter) {
    this.ctx = ctx
    this.adoptLane = adoptLane
    this.js = new JsPath(this)
    this.opts = ctx.opts
    this.config = config
    this.key = listenerKey(config.spec)
    this.name = this.key
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }) as ListenerServer
    this.server[kListener] = this
    this.server.on('connection', onConnection)
    this.server.on('error', onServerError)
    this.server.on('listening', onServerListening)
  }

  listen (): Promise<void> {
    const { host, port } = this.config.spec
    return new Promise((resolve, reject) => {
      const onErr = (err: Error): void => { reject(err) }
      this.server.once('error', onErr)
      this.server.listen({ host, port, backlog: 4096, exclusive: true }, () => {
        this.server.removeListener('error', onErr)
        const a = this.server.address()
        if (a !== null && typeof a === 'object') {
          this.port = a.port
          // Bound to one address (the default: never 0.0.0.0 or ::), every
          // connection's local end is that address and port: no getsockname per accept.
          this.boundAddress = isUnspecifiedAddress(a.address) ? undefined : a.address
        }
        this.name = listenerKey({ host, port: this.port })
        this.bindCells()
        // Eligible plain L4 listeners are accepted natively from here on (issue #8 target 3).
        this.lane = this.adoptLane?.(this)
        resolve()
      })
    })
  }

  private bindCells (): void {
    const m = this.ctx.m
    const l = { listener: this.name }
    this.outcomeCells = Object.fromEntries(CONN_OUTCOMES.map((o) => [o, m.connections.bind({ ...l, outcome: o })])) as Record<ConnOutcome, Cell>
    this.routeCells = Object.fromEntries(ROUTE_OUTCOMES.map((o) => [o, m.routeDecisions.bind({ ...l, outcome: o })])) as Record<RouteOutcome, Cell>
    this.accepted = m.accepted.bind(l)
    this.duration = m.duration.bind()
    this.bytesIn = m.bytes.bind({ ...l, direction: 'client_to_upstream' })
    this.bytesOut = m.bytes.bind({ ...l, direction: 'upstream_to_client' })
  }

  /** Open connections: JS ones plus the native lane's (as last read). */
  get activeCount (): number {
    return this.active.size + (this.lane?.active ?? 0)
  }

  /** Both paths, the lane's only while it has not stopped or still has connections. */
  get paths (): AcceptPath[] {
    return this.lane === undefined ? [this.js] : [this.js, this.lane]
  }

  /**
   * The config was swapped on reload: the lane takes it, or hands the socket
   * back to JS when no longer eligible (settles once JS listens again).
   */
  reconfigured (): Promise<void> | undefined {
    if (this.lane === undefined || this.lane.stopped) return undefined
    return this.lane.reconfigure()
  }

  /** Each time the server listens (again, on a new handle, after the native lane hands it back). */
  onListening (): void {
    this.hookEarlyDial()
  }

  accept (socket: Socket): void {
    const early = this.takeEarly(socket)
    if (!this.admit(socket, early)) early?.socket?.destroy()
  }

  /** Refused here: over either connection cap. */
  private full (): boolean {
    return this.ctx.activeCount >= this.opts.maxConnections || this.active.size >= this.config.maxConnections
  }

  /** Refused here: outside the listener's loadBalancerSourceRanges. */
  private denies (address: string, family: 4 | 6): boolean {
    const allow = this.config.allow
    return allow !== undefined && !allow.check(address, family === 4 ? 'ipv4' : 'ipv6')
  }

  /** False: the connection was refused (counted, closed). */
  private admit (socket: Socket, early: EarlyDial | undefined): boolean {
    const mgr = this.ctx
    const cfg = this.config
    if (!this.accepting) { socket.destroy(); return false }
    if (this.full()) {
      this.outcomeCells.max_connections.inc()
      socket.on('error', noop)
      socket.destroy()
      return false
    }
    const address = socket.remoteAddress
    if (address === undefined) {
      // The client reset between the kernel's accept and ours: nothing to
      // serve, but it still counts (issue #9 flood accounting).
      this.outcomeCells.reset_client.inc()
      socket.on('error', noop)
      socket.destroy()
      return false
    }
    const family: 4 | 6 = isIPv4(address) ? 4 : 6
    if (this.denies(address, family)) {
      this.outcomeCells.source_denied.inc()
      socket.on('error', noop)
      socket.resetAndDestroy()
      return false
    }
    this.accepted.inc()
    const info: ClientInfo = {
      address,
      port: socket.remotePort ?? 0,
      family,
      localAddress: this.boundAddress ?? socket.localAddress ?? '',
      localPort: this.boundAddress !== undefined ? this.port : socket.localPort ?? 0,
    }
    const conn = new Connection(this, cfg, socket, info, early)
    this.active.add(conn)
    mgr.activeCount++
    conn.begin()
    return true
  }

  /**
   * Begin each connection's dial as the kernel hands the client over, before
   * Node builds its Socket and this listener's JS sets the connection up:
   * for a relay-dialed listener that is the OPEN (or the warm connection's
   * BIND) on its way some 60 µs earlier, so the relay in the Docker VM dials
   * the node while this process is still busy, instead of after (issue 12:
   * in paired turns, a fresh connection's first byte 64-73 µs sooner). Only
   * where a dial has a synchronous part (Upstream.dialsNow) and no peek has
   * to choose the route; the checks accept() makes come first. Node's
   * listening handle and its `onconnection` are internals: where they are
   * missing, connections take the ordinary path. KT_EARLY_DIAL=0 turns it off.
   */
  private hookEarlyDial (): void {
    if (process.env.KT_EARLY_DIAL === '0') return
    const h = (this.server as unknown as { _handle?: ServerHandle | null })._handle
    if (h === null || h === undefined || typeof h.onconnection !== 'function' || h[kEarlyHooked] === true) return
    h[kEarlyHooked] = true
    const onconnection = h.onconnection
    const l = this
    h.onconnection = function (status, client) {
      if (status === 0 && client !== undefined) {
        try {
          const dial = l.earlyDial(client)
          if (dial !== undefined) {
            l.pendingEarly = { handle: client, dial }
            if (dial.failed !== undefined) l.earlyDialFailed(dial.failed)
          }
        } catch (err) {
          // Never in the way of the accept: the connection takes the ordinary path.
          l.earlyDialFailed(err)
        }
      }
      try {
        return onconnection.call(this, status, client)
      } finally {
        // Node builds the Socket and emits 'connection' before it returns; if
        // it did not (an error, its own limits), nothing took the dial.
        const left = l.pendingEarly
        l.pendingEarly = undefined
        left?.dial.socket?.destroy()
      }
    }
  }

  /** The dial hookEarlyDial begins, after the same refusals accept() makes; undefined: none. */
  private earlyDial (client: PeerHandle): EarlyDial | undefined {
    const cfg = this.config
    const up = cfg.defaultUpstream
    const local = this.boundAddress
    if (cfg.peek || up === undefined || local === undefined || !this.accepting || !up.dialsNow || this.full()) return undefined
    const peer: { address?: string, port?: number } = {}
    if (typeof client.getpeername !== 'function' || client.getpeername(peer) !== 0 || typeof peer.address !== 'string') return undefined
    const family: 4 | 6 = isIPv4(peer.address) ? 4 : 6
    if (this.denies(peer.address, family)) return undefined
    const info: ClientInfo = { address: peer.address, port: peer.port ?? 0, family, localAddress: local, localPort: this.port }
    return up.dialNow(info, this.opts.connectTimeoutMs)
  }

  private earlyDialFailed (err: unknown): void {
    if (this.earlyDialWarned) return
    this.earlyDialWarned = true
    this.ctx.log.warn({ listener: this.name, err: (err as Error)?.message ?? String(err) }, 'beginning a dial early failed; this listener\'s connections dial the ordinary way when it does')
  }

  /** The early dial begun for this socket's handle, taken (one that is not this socket's goes). */
  private takeEarly (socket: Socket): EarlyDial | undefined {
    const p = this.pendingEarly
    if (p === undefined) return undefined
    this.pendingEarly = undefined
    if ((socket as unknown as { _handle?: unknown })._handle === p.handle) return p.dial
    p.dial.socket?.destroy()
    return undefined
  }

  /** Called once per connection by Connection.finish(). */
  closed (conn: ClosedConnection): void {
    this.active.delete(conn as Connection)
    this.ctx.activeCount--
    const outcome = conn.outcome as ConnOutcome
    this.outcomeCells[outcome].inc()
    const r = conn.result
    if (r !== undefined) {
      this.bytesIn.inc(r.clientToUpstream)
      this.bytesOut.inc(r.upstreamToClient)
    }
    const seconds = (performance.now() - conn.start) / 1000
    this.duration.observe(seconds)
    if (!this.opts.accessLog) return
    logAccess(this.ctx.accessLog, {
      listener: this.name,
      client: conn.info.address,
      clientPort: conn.info.port,
      route: conn.routeOutcome,
      name: conn.routeName,
      upstream: conn.upstream?.id,
      backend: conn.backend?.key,
      attempts: conn.attempts,
      bytesIn: r?.clientToUpstream ?? 0,
      bytesOut: r?.upstreamToClient ?? 0,
      ms: Math.round(seconds * 1000),
      cause: conn.outcome as ConnOutcome,
      error: conn.lastError,
    })
  }

  onAcceptError (err: NodeJS.ErrnoException): void {
    // EMFILE/ENFILE: libuv already sheds the pending connection; keep serving
    // and say so at most once a second.
    this.ctx.m.acceptErrors.inc({ listener: this.name, code: err.code ?? 'UNKNOWN' })
    const now = Date.now()
    if (now - this.lastAcceptErrorLog > 1000) {
      this.lastAcceptErrorLog = now
      this.ctx.log.warn({ listener: this.name, code: err.code }, 'accept failed; still serving')
    }
  }

  /**
   * Stop accepting and release the port now; existing connections continue.
   * (server.close()'s callback waits for every connection, so it is not awaited.)
   */
  stopAccepting (): void {
    this.lane?.stop()
    this.js.stop()
  }
}

/** The JS path: the listener's own server accepts; its connections drain or abort one by one. */
class JsPath implements AcceptPath {
  private readonly l: Listener
  constructor (l: Listener) { this.l = l }
  get active (): number { return this.l.active.size }
  get stopped (): boolean { return !this.l.accepting }
  reconfigure (): undefined { return undefined /* every connection reads the config it was accepted with */ }
  stop (): void {
    if (!this.l.accepting) return
    this.l.accepting = false
    this.l.server.close()
  }

  drain (ms: number): void {
    for (const c of this.l.active) {
      if (c.drainTimer !== undefined || c.done) continue
      c.drainTimer = setTimeout(() => { c.abort() }, ms)
      c.drainTimer.unref()
    }
  }

  abort (): void {
    for (const c of this.l.active) c.abort()
  }
}

function noop (): void {}

function onConnection (this: ListenerServer, socket: Socket): void {
  this[kListener].accept(socket)
}

function onServerListening (this: ListenerServer): void {
  this[kListener].onListening()
}

function onServerError (this: ListenerServer, err: NodeJS.ErrnoException): void {
  if (this.listening) this[kListener].onAcceptError(err)
}
