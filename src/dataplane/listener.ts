// A Listener owns one bound net.Server. Its routing config is an immutable
// object swapped atomically on reload: connections keep the config they were
// accepted with, new ones see the new one, and the socket is never rebound.

import { BlockList, createServer, isIPv4, type Server, type Socket } from 'node:net'
import type { Cell } from '../observe/metrics.js'
import type { HostMatcher } from '../routing/hostmatch.js'
import { listenerKey, type ListenerSpec } from '../routing/types.js'
import { Connection, type ConnOutcome, type RouteOutcome } from './connection.js'
import type { ListenerManager, DataplaneOptions } from './listener-manager.js'
import type { ClientInfo, Upstream } from './upstream.js'
import type { LaneListener } from './fastlane.js'

/** What a hostname resolves to on a shared listener. */
export interface RouteTarget {
  readonly upstream: Upstream
  /** This route's own allowed client ranges (a Service sharing the listener); undefined means everyone. */
  readonly allow: BlockList | undefined
}

export interface ListenerConfig {
  readonly spec: ListenerSpec
  /** Peek the first flight: only when the listener has hostname routes. */
  readonly peek: boolean
  readonly matcher: HostMatcher<RouteTarget> | undefined
  readonly defaultUpstream: Upstream | undefined
  /** Allowed client ranges; undefined means everyone. */
  readonly allow: BlockList | undefined
  readonly maxConnections: number
}

const CONN_OUTCOMES: readonly ConnOutcome[] = ['eof', 'reset_client', 'reset_upstream', 'idle_timeout', 'aborted', 'connect_failed', 'no_route', 'client_closed', 'peek_timeout', 'too_large', 'max_connections', 'source_denied', 'error']
const ROUTE_OUTCOMES: readonly RouteOutcome[] = ['sni', 'host', 'default', 'no_route', 'peek_timeout', 'too_large', 'not_tls_or_http']

const kListener = Symbol('kt.listener')
interface ListenerServer extends Server { [kListener]: Listener }

export class Listener {
  readonly key: string
  readonly manager: ListenerManager
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
  private lastAcceptErrorLog = 0
  /** Set when the native accept lane took this listener (fastlane.ts); JS then accepts nothing on it. */
  lane: LaneListener | undefined

  constructor (manager: ListenerManager, config: ListenerConfig) {
    this.manager = manager
    this.opts = manager.opts
    this.config = config
    this.key = listenerKey(config.spec)
    this.name = this.key
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }) as ListenerServer
    this.server[kListener] = this
    this.server.on('connection', onConnection)
    this.server.on('error', onServerError)
  }

  listen (): Promise<void> {
    const { host, port } = this.config.spec
    return new Promise((resolve, reject) => {
      const onErr = (err: Error): void => { reject(err) }
      this.server.once('error', onErr)
      this.server.listen({ host, port, backlog: 4096, exclusive: true }, () => {
        this.server.removeListener('error', onErr)
        const a = this.server.address()
        if (a !== null && typeof a === 'object') this.port = a.port
        this.name = listenerKey({ host, port: this.port })
        this.bindCells()
        // Eligible plain L4 listeners are accepted natively from here on (issue #8 target 3).
        this.lane = this.manager.lane?.adopt(this)
        resolve()
      })
    })
  }

  private bindCells (): void {
    const m = this.manager.m
    const l = { listener: this.name }
    this.outcomeCells = Object.fromEntries(CONN_OUTCOMES.map((o) => [o, m.connections.bind({ ...l, outcome: o })])) as Record<ConnOutcome, Cell>
    this.routeCells = Object.fromEntries(ROUTE_OUTCOMES.map((o) => [o, m.routeDecisions.bind({ ...l, outcome: o })])) as Record<RouteOutcome, Cell>
    this.accepted = m.accepted.bind(l)
    this.bytesIn = m.bytes.bind({ ...l, direction: 'client_to_upstream' })
    this.bytesOut = m.bytes.bind({ ...l, direction: 'upstream_to_client' })
  }

  /** Open connections: JS ones plus the native lane's (as last read). */
  get activeCount (): number {
    return this.active.size + (this.lane?.active ?? 0)
  }

  /** The config was swapped on reload: the lane takes it, or hands the socket back to JS when no longer eligible. */
  reconfigured (): void {
    if (this.lane !== undefined && !this.lane.stopped) this.manager.lane?.reconfigure(this.lane)
  }

  accept (socket: Socket): void {
    const mgr = this.manager
    const cfg = this.config
    if (!this.accepting) { socket.destroy(); return }
    if (mgr.activeCount >= this.opts.maxConnections || this.active.size >= cfg.maxConnections) {
      this.outcomeCells.max_connections.inc()
      socket.on('error', noop)
      socket.destroy()
      return
    }
    const address = socket.remoteAddress
    if (address === undefined) {
      // The client reset between the kernel's accept and ours: nothing to
      // serve, but it still counts (issue #9 flood accounting).
      this.outcomeCells.reset_client.inc()
      socket.on('error', noop)
      socket.destroy()
      return
    }
    const family: 4 | 6 = isIPv4(address) ? 4 : 6
    if (cfg.allow !== undefined && !cfg.allow.check(address, family === 4 ? 'ipv4' : 'ipv6')) {
      this.outcomeCells.source_denied.inc()
      socket.on('error', noop)
      socket.resetAndDestroy()
      return
    }
    this.accepted.inc()
    const info: ClientInfo = {
      address,
      port: socket.remotePort ?? 0,
      family,
      localAddress: socket.localAddress ?? '',
      localPort: socket.localPort ?? 0,
    }
    const conn = new Connection(this, cfg, socket, info)
    this.active.add(conn)
    mgr.activeCount++
    conn.begin()
  }

  /** Called once per connection by Connection.finish(). */
  closed (conn: Connection): void {
    this.active.delete(conn)
    this.manager.activeCount--
    const outcome = conn.outcome as ConnOutcome
    this.outcomeCells[outcome].inc()
    const r = conn.result
    if (r !== undefined) {
      this.bytesIn.inc(r.clientToUpstream)
      this.bytesOut.inc(r.upstreamToClient)
    }
    this.manager.connectionClosed(conn)
  }

  onAcceptError (err: NodeJS.ErrnoException): void {
    // EMFILE/ENFILE: libuv already sheds the pending connection; keep serving
    // and say so at most once a second.
    this.manager.m.acceptErrors.inc({ listener: this.name, code: err.code ?? 'UNKNOWN' })
    const now = Date.now()
    if (now - this.lastAcceptErrorLog > 1000) {
      this.lastAcceptErrorLog = now
      this.manager.log.warn({ listener: this.name, code: err.code }, 'accept failed; still serving')
    }
  }

  /**
   * Stop accepting and release the port now; existing connections continue.
   * (server.close()'s callback waits for every connection, so it is not awaited.)
   */
  stopAccepting (): void {
    if (!this.accepting) return
    this.accepting = false
    this.lane?.stop()
    this.server.close()
  }
}

function noop (): void {}

function onConnection (this: ListenerServer, socket: Socket): void {
  this[kListener].accept(socket)
}

function onServerError (this: ListenerServer, err: NodeJS.ErrnoException): void {
  if (this.listening) this[kListener].onAcceptError(err)
}
