// The RouteTable is the contract between the control plane (controller, CLI
// flags) and the data plane. It is plain, serialisable data: no sockets, no
// functions. The ListenerManager applies a table as a diff, keyed by
// listener `host:port` and by upstream `id`.
import { BlockList, isIP } from 'node:net'

export interface Endpoint {
  readonly host: string
  readonly port: number
}

export type BalancePolicy = 'round-robin' | 'least-connections' | 'random' | 'client-ip-hash'
export type ProxyProtocolVersion = 'v1' | 'v2'

export type HealthCheckSpec =
  | { readonly kind: 'tcp' }
  | { readonly kind: 'http', readonly port: number, readonly path: string }

/** What to do when every backend of an upstream is unhealthy. */
export type AllUnhealthyPolicy = 'try-all' | 'refuse'

/** A set of interchangeable backends (one Service port: node IPs × NodePort). */
/** The Service port an upstream serves: a structured reference, so nothing parses `UpstreamSpec.id` back. */
export interface ServicePortRef {
  readonly cluster: string
  readonly namespace: string
  readonly name: string
  readonly port: number
  /** The Service's creationTimestamp, for the hostname-conflict order between clusters (kube.ts nameClaimOrder). */
  readonly created?: string
}

export interface UpstreamSpec {
  /** Stable identity across tables, e.g. `default/web:https`; pools and health state follow it. */
  readonly id: string
  /** The Service port behind it (computeRoutes sets it; absent for `proxy --route` upstreams). */
  readonly service?: ServicePortRef
  readonly endpoints: readonly Endpoint[]
  readonly policy?: BalancePolicy
  readonly proxyProtocol?: ProxyProtocolVersion
  readonly health?: HealthCheckSpec
  readonly poolSize?: number
  readonly allUnhealthy?: AllUnhealthyPolicy
  /** Name of a registered dialer (`direct` when absent), e.g. `relay:<cluster>`. */
  readonly dialer?: string
}

/** A hostname route on a shared listener. Names are exact (`a.b.test`) or wildcards (`*.b.test`). */
export interface HostRoute {
  readonly names: readonly string[]
  readonly upstream: UpstreamSpec
  /**
   * CIDRs allowed on this route (loadBalancerSourceRanges of a Service that
   * shares the listener with others); checked after the name matched.
   * Absent or empty means everyone.
   */
  readonly sourceRanges?: readonly string[]
}

export interface ListenerSpec {
  readonly host: string
  readonly port: number
  /** Hostname routes; when empty the listener is plain L4 and never peeks. */
  readonly routes: readonly HostRoute[]
  /** Where unmatched (or unpeeked) connections go; absent means close and count. */
  readonly default?: UpstreamSpec
  /** CIDRs allowed to connect (loadBalancerSourceRanges); absent or empty means everyone. */
  readonly sourceRanges?: readonly string[]
  /** Per-listener connection cap. */
  readonly maxConnections?: number
  /** Free-form owner label for logs and status (e.g. `default/web`). */
  readonly owner?: string
  /**
   * `udp`: a datagram listener (dataplane/udp/plane.ts; no routes, no PROXY
   * header); absent or `tcp` is a stream listener. A TCP and a UDP listener
   * may share host and port.
   */
  readonly protocol?: 'tcp' | 'udp'
}

export interface RouteTable {
  readonly version: number
  readonly listeners: readonly ListenerSpec[]
}

const UNSPECIFIED = new BlockList()
UNSPECIFIED.addAddress('0.0.0.0', 'ipv4')
UNSPECIFIED.addAddress('::', 'ipv6')
UNSPECIFIED.addAddress('::ffff:0.0.0.0', 'ipv6')

/** An address that binds every local address: 0.0.0.0, ::, or ::ffff:0.0.0.0, in any spelling. */
export function isUnspecifiedAddress (host: string): boolean {
  const fam = isIP(host)
  return fam !== 0 && UNSPECIFIED.check(host, fam === 4 ? 'ipv4' : 'ipv6')
}

export function listenerKey (l: { host: string, port: number }): string {
  return l.host.includes(':') ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}`
}

export function endpointKey (e: Endpoint): string {
  return e.host.includes(':') ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`
}
