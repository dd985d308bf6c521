// The status `up` reports (control socket, `status`, the TTY table): plain
// data derived from the applied RouteTable and the data plane's snapshot.
// Pure: no I/O.

import { UDP_SUFFIX } from '../dataplane/udp/plane.js'
import type { DataplaneSnapshot } from '../dataplane/listener-manager.js'
import type { MergeConflict } from '../routing/merge.js'
import type { RouteTable, UpstreamSpec } from '../routing/types.js'
import { endpointKey, listenerKey } from '../routing/types.js'

export interface BackendStatus {
  readonly address: string
  /** `up`, `down` (out of rotation) or `unknown` when the data plane does not say. */
  readonly health: 'up' | 'down' | 'unknown'
  /** Why it is down (the last failed check or connect), when the data plane says. */
  readonly cause?: string
  readonly active: number
}

export interface ServicePortStatus {
  readonly port: number
  /** `host:port` of the listener. */
  readonly listener: string
  /** Names routed to it on a shared listener; empty when it is the listener's only or default upstream. */
  readonly names: readonly string[]
  readonly default: boolean
}

/** One Service port: the addresses and names that reach it, beside the backends they reach. */
export interface ServicePortGroup {
  readonly port: number
  readonly addresses: readonly string[]
  readonly hostnames: readonly string[]
  readonly unbound: readonly string[]
  /** Keys (`host:port`) into ServiceStatus.backends. */
  readonly backends: readonly string[]
}

export interface ServiceStatus {
  readonly cluster: string
  readonly namespace: string
  readonly name: string
  /** Dedicated-IP addresses (`ip:port`). */
  readonly addresses: readonly string[]
  /** `http://name:port` or `https://name:port` style entries for hostname mode. */
  readonly hostnames: readonly string[]
  readonly ports: readonly ServicePortStatus[]
  readonly backends: readonly BackendStatus[]
  /** Per Service port, what reaches what (the table's rows). */
  readonly byPort: readonly ServicePortGroup[]
  readonly healthy: number
  /** Listeners of this Service that are in the table but not bound (taken port, EACCES, ...). */
  readonly unbound: readonly string[]
}

/** The relay dialer's pool as `status` shows it (src/relay/client.ts RelayPoolStats). */
export interface RelayPoolStatus {
  readonly idle: number
  readonly target?: number
  readonly hits: number
  readonly misses: number
  readonly hitRate?: number
  /** How the relay container splices (it says so in its answer to the pool's AUTH). */
  readonly dataPath?: 'native' | 'js' | 'unknown'
  /** Who accepts in the relay container: its addon (no JS per connection) or its JS. */
  readonly acceptPath?: 'native' | 'js'
  readonly lastError?: string
  /** How dials travel now: streams over long-lived connections (mux) or a connection each (pool). */
  readonly transport?: 'mux' | 'pool'
  /** The transport follows the rate of new connections to each destination (--relay-transport auto, the default). */
  readonly auto?: boolean
  /** auto: destinations whose new connections come fast enough for mux now. */
  readonly destinationsOnMux?: number
  /** auto: new connections a second to one destination from which it goes over mux. */
  readonly autoMuxRate?: number
  /** The multiplexed carriers (src/relay/mux-client.ts MuxPoolStats): with mux, and with auto once new connections came fast. */
  readonly mux?: { readonly state: string, readonly carriers: number, readonly streams: number, readonly opened: number, readonly lastError?: string }
}

export interface ClusterStatus {
  readonly name: string
  readonly mode: string
  readonly reason: string
  readonly synced: boolean
  readonly relay?: { readonly name: string, readonly port: number, readonly pool?: RelayPoolStatus | undefined }
  readonly controller?: unknown
  readonly error?: string
}

export interface Totals {
  readonly active: number
  readonly accepted: number
  readonly bytesIn: number
  readonly bytesOut: number
  readonly poolHits: number
  readonly poolMisses: number
}

export interface UpStatus {
  readonly pid: number
  readonly startedAt: string
  readonly stateDir: string
  readonly address: string
  readonly listenHost: string
  readonly ready: boolean
  readonly version: number
  readonly clusters: readonly ClusterStatus[]
  readonly services: readonly ServiceStatus[]
  readonly listeners: DataplaneSnapshot['listeners']
  readonly conflicts: readonly MergeConflict[]
  readonly totals: Totals
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

function healthOf (b: Record<string, unknown> | undefined): 'up' | 'down' | 'unknown' {
  if (b === undefined) return 'unknown'
  for (const k of ['available', 'healthy', 'up']) {
    const v = b[k]
    if (typeof v === 'boolean') return v ? 'up' : 'down'
  }
  if (typeof b.health === 'string') return b.health === 'healthy' || b.health === 'up' ? 'up' : 'down'
  return 'unknown'
}

export interface DeriveOptions {
  readonly listenHost: string
  readonly httpsPort: number
  readonly hostnameSuffix?: string
}

/** Services, their addresses, names and backends, from the applied table and the data plane. */
export function deriveServices (table: RouteTable, snap: DataplaneSnapshot, o: DeriveOptions): ServiceStatus[] {
  const suffix = o.hostnameSuffix ?? 'localhost'
  const backendsById = new Map(snap.upstreams.map((u) => [u.id, new Map(u.backends.map((b) => [b.key, b]))]))
  const boundPort = new Map(snap.listeners.map((l) => [l.key, l.port]))
  interface Group { port: number, addresses: Set<string>, hostnames: Set<string>, unbound: Set<string> }
  interface Acc { cluster: string, namespace: string, name: string, ports: ServicePortStatus[], addresses: Set<string>, hostnames: Set<string>, unbound: Set<string>, upstreams: Map<string, UpstreamSpec>, groups: Map<string, Group> }
  const acc = new Map<string, Acc>()
  const note = (up: UpstreamSpec, listener: { host: string, port: number, protocol?: string }, names: readonly string[], isDefault: boolean): void => {
    const p = up.service
    if (p === undefined) return
    const key = `${p.cluster}/${p.namespace}/${p.name}`
    let a = acc.get(key)
    if (a === undefined) acc.set(key, a = { cluster: p.cluster, namespace: p.namespace, name: p.name, ports: [], addresses: new Set(), hostnames: new Set(), unbound: new Set(), upstreams: new Map(), groups: new Map() })
    a.upstreams.set(up.id, up)
    let g = a.groups.get(up.id)
    if (g === undefined) a.groups.set(up.id, g = { port: p.port, addresses: new Set(), hostnames: new Set(), unbound: new Set() })
    const udp = listener.protocol === 'udp' ? UDP_SUFFIX : ''
    const k = listenerKey(listener) + udp
    const realPort = boundPort.get(k) ?? listener.port
    a.ports.push({ port: p.port, listener: listenerKey({ host: listener.host, port: realPort }) + udp, names: [...names], default: isDefault })
    if (!boundPort.has(k)) { a.unbound.add(k); g.unbound.add(k); return }
    if (udp !== '') {
      // UDP: no scheme and never routed by name, so always an address (the
      // listen host's too, in hostname mode): `host:port/udp` as in `-p 53:53/udp`.
      a.addresses.add(listenerKey({ host: listener.host, port: realPort }) + udp)
      g.addresses.add(listenerKey({ host: listener.host, port: realPort }) + udp)
      return
    }
    const scheme = listener.port === o.httpsPort || p.port === 443 ? 'https' : 'http'
    const portText = (scheme === 'https' && realPort === 443) || (scheme === 'http' && realPort === 80) ? '' : `:${realPort}`
    if (listener.host === o.listenHost) {
      const shown = names.length > 0 ? names : [`${p.name}.${p.namespace}.${suffix}`]
      for (const n of shown) { a.hostnames.add(`${scheme}://${n}${portText}`); g.hostnames.add(`${scheme}://${n}${portText}`) }
    } else {
      a.addresses.add(listenerKey({ host: listener.host, port: realPort }))
      g.addresses.add(listenerKey({ host: listener.host, port: realPort }))
    }
  }
  for (const l of table.listeners) {
    for (const r of l.routes) note(r.upstream, l, r.names, false)
    if (l.default !== undefined) {
      // An L4 listener (one Service alone on its port) answers any name.
      note(l.default, l, [], true)
    }
  }
  const out: ServiceStatus[] = []
  for (const a of acc.values()) {
    const backends = new Map<string, BackendStatus>()
    for (const up of a.upstreams.values()) {
      const live = backendsById.get(up.id)
      for (const e of up.endpoints) {
        const k = endpointKey(e)
        const b = live?.get(k) as Record<string, unknown> | undefined
        const prev = backends.get(k)
        const health = healthOf(b)
        const active = typeof b?.active === 'number' ? b.active : 0
        const cause = typeof b?.lastFailure === 'string' && health === 'down' ? b.lastFailure : prev?.cause
        backends.set(k, { address: k, health: prev?.health === 'down' ? 'down' : health, ...(cause !== undefined ? { cause } : {}), active: (prev?.active ?? 0) + active })
      }
    }
    const list = [...backends.values()].sort((x, y) => cmp(x.address, y.address))
    out.push({
      cluster: a.cluster,
      namespace: a.namespace,
      name: a.name,
      addresses: [...a.addresses].sort(cmp),
      hostnames: [...a.hostnames].sort(cmp),
      ports: a.ports.sort((x, y) => x.port - y.port || cmp(x.listener, y.listener)),
      backends: list,
      byPort: [...a.groups.entries()].map(([id, g]) => ({
        port: g.port,
        addresses: [...g.addresses].sort(cmp),
        hostnames: [...g.hostnames].sort(cmp),
        unbound: [...g.unbound].sort(cmp),
        backends: [...new Set((a.upstreams.get(id)?.endpoints ?? []).map(endpointKey))].sort(cmp),
      })).sort((x, y) => x.port - y.port),
      healthy: list.filter((b) => b.health !== 'down').length,
      unbound: [...a.unbound].sort(cmp),
    })
  }
  return out.sort((x, y) => cmp(`${x.cluster}/${x.namespace}/${x.name}`, `${y.cluster}/${y.namespace}/${y.name}`))
}

/** Sum of every sample of a counter in Prometheus text (`name{...} value`). */
export function sumMetric (text: string, name: string, label?: string): number {
  let total = 0
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue
    const rest = line.slice(name.length)
    if (rest[0] !== '{' && rest[0] !== ' ') continue
    if (label !== undefined && !rest.includes(label)) continue
    const v = Number(line.slice(line.lastIndexOf(' ') + 1))
    if (Number.isFinite(v)) total += v
  }
  return total
}

export function totals (snap: DataplaneSnapshot, metricsText: string): Totals {
  let accepted = 0
  let bytesIn = 0
  let bytesOut = 0
  for (const l of snap.listeners) { accepted += l.accepted; bytesIn += l.bytesIn; bytesOut += l.bytesOut }
  return {
    active: snap.active,
    accepted,
    bytesIn,
    bytesOut,
    poolHits: sumMetric(metricsText, 'kt_upstream_pool_hits_total') + sumMetric(metricsText, 'kt_relay_pool_total', 'hit'),
    poolMisses: sumMetric(metricsText, 'kt_upstream_pool_misses_total') + sumMetric(metricsText, 'kt_relay_pool_total', 'miss'),
  }
}
