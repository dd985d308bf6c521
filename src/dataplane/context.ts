// What the data plane's parts share, as types only (plus the default
// options): the options, the listener config, the context object a
// ListenerManager hands its listeners and their accept paths (options, logs,
// metric cells, the splicer, the upstream lookup), the accept-path interface
// both paths implement, and the record the access log is built from.
// Everything in src/dataplane may import this module and this module imports
// none of them but leaf types, so the package's import graph stays acyclic
// (test/dataplane/import-graph.test.ts checks it).

import type { BlockList, Server } from 'node:net'
import type { Logger } from '../observe/logger.js'
import type { Cell, Counter, Gauge, Histogram, Registry } from '../observe/metrics.js'
import type { HostMatcher } from '../routing/hostmatch.js'
import type { BalancePolicy, ListenerSpec } from '../routing/types.js'
import type { NativeSplicer } from './native/index.js'
import type { PoolSizeSetting } from './pool.js'
import type { Backend, ClientInfo, Upstream } from './upstream.js'
import type { ConnOutcome, RouteOutcome } from './vocab.js'

export interface DataplaneOptions {
  connectTimeoutMs: number
  connectAttempts: number
  idleTimeoutMs: number
  halfCloseTimeoutMs: number
  peekTimeoutMs: number
  /** Global cap over every listener. */
  maxConnections: number
  /** Default per-listener cap (a ListenerSpec may set its own). */
  maxConnectionsPerListener: number
  drainTimeoutMs: number
  policy: BalancePolicy
  /** Warm sockets per backend: a count, or `auto` (pool.ts effectivePoolSize). */
  poolSize: PoolSizeSetting
  accessLog: boolean
}

export const DEFAULT_DATAPLANE_OPTIONS: Readonly<DataplaneOptions> = Object.freeze({
  connectTimeoutMs: 5_000, // Envoy's default
  connectAttempts: 3, // HAProxy retries 3 + redispatch
  idleTimeoutMs: 3_600_000, // Envoy's default, 1 h
  halfCloseTimeoutMs: 30_000,
  peekTimeoutMs: 10_000,
  maxConnections: 10_000,
  maxConnectionsPerListener: 10_000,
  drainTimeoutMs: 10_000,
  policy: 'round-robin',
  poolSize: 'auto',
  accessLog: true,
})

/** What a hostname resolves to on a shared listener. */
export interface RouteTarget {
  readonly upstream: Upstream
  /** This route's own allowed client ranges (a Service sharing the listener); undefined means everyone. */
  readonly allow: BlockList | undefined
}

/** A listener's routing config: immutable, swapped whole on reload. */
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

/** The data plane's metrics, registered once per ListenerManager. */
export interface DataplaneMetrics {
  readonly connections: Counter
  readonly routeDecisions: Counter
  readonly accepted: Counter
  readonly bytes: Counter
  readonly acceptErrors: Counter
  readonly connectErrors: Counter
  readonly nativeFallbacks: Cell
  readonly nativeDropped: Cell
  readonly active: Gauge
  readonly duration: Histogram
}

/** One per ListenerManager: what listeners, connections and the native lane read and report through. */
export interface DataplaneContext {
  readonly opts: DataplaneOptions
  readonly log: Logger
  readonly accessLog: Logger
  readonly metrics: Registry
  readonly m: DataplaneMetrics
  /** The native splice fast path (undefined: the JS splice for every connection). */
  readonly splicer: NativeSplicer | undefined
  upstreamOf (id: string): Upstream | undefined
  /** Open connections over every listener and both paths (the global cap). */
  activeCount: number
  /** Out of file descriptors: warn (rate-limited). */
  fdExhausted (code: string): void
}

/** A listener's metric cells, bound once its real address is known. */
export interface ListenerCells {
  readonly outcomeCells: Record<ConnOutcome, Cell>
  readonly routeCells: Record<RouteOutcome, Cell>
  readonly accepted: Cell
  readonly bytesIn: Cell
  readonly bytesOut: Cell
}

/** A listener as its connections and its accept paths see it. */
export interface ListenerView extends ListenerCells {
  readonly ctx: DataplaneContext
  readonly opts: DataplaneOptions
  /** The bound address (`127.0.0.1:43125`): the label in metrics and logs. */
  readonly name: string
  readonly config: ListenerConfig
  readonly server: Server
  /** A JS connection ended (once per connection). */
  closed (conn: ClosedConnection): void
}

/** What is known of a JS connection when it ends (connection.ts Connection). */
export interface ClosedConnection {
  readonly outcome: ConnOutcome | undefined
  readonly result: { readonly clientToUpstream: number, readonly upstreamToClient: number } | undefined
  readonly start: number
  readonly info: ClientInfo
  readonly routeOutcome: RouteOutcome | undefined
  readonly routeName: string | undefined
  readonly upstream: Upstream | undefined
  readonly backend: Backend | undefined
  readonly attempts: number
  readonly lastError: string | undefined
}

/**
 * One way connections of a listener are accepted: the JS path (listener.ts,
 * the Listener's net.Server) or the native lane (fastlane.ts). The manager
 * drives both through this.
 */
export interface AcceptPath {
  /** Connections open on this path now (the lane's as last read). */
  readonly active: number
  readonly stopped: boolean
  /** The listener's config or its upstreams' health changed; settles when the path has taken it. */
  reconfigure (): Promise<void> | undefined
  /** No new connections; open ones continue. */
  stop (): void
  /** Reset what is still open after `ms`. */
  drain (ms: number): void
  /** Reset every open connection now. */
  abort (): void
}
