// mergeTables: one RouteTable for the one ListenerManager, from the tables of
// every cluster `up` serves. Pure: no I/O, no clock, no logging; the same
// inputs give a deep-equal result.
//
// Listeners of different clusters rarely share a key in ip mode (each Service
// has its own IP), but in hostname mode every cluster wants 127.0.0.1:8443
// and :8080. Listeners with the same key merge their routes:
// - a hostname claimed by two clusters goes by the rule computeRoutes uses
//   inside one cluster (kube.ts nameClaimOrder: the Service whose generated
//   name it is, then the older Service, then namespace/name, then the
//   cluster's name); the other is reported, never silently dropped;
// - a listener that is plain L4 in its own cluster (one Service alone on the
//   port, so computeRoutes gave it a default and no routes) keeps answering by
//   its generated name `<service>.<namespace>.<suffix>` once it shares the
//   port, and stays the port's default when it was the first one;
// - a default with loadBalancerSourceRanges is never made the default of a
//   shared port, where the ranges could not be enforced for every name: it
//   becomes a name route carrying its ranges.

import { type NameClaimant, nameClaimOrder, timestampMs } from './kube.js'
import { narrowRanges, sortListeners } from './listeners.js'
import { normalizeHostname } from './names.js'
import { listenerKey, type HostRoute, type ListenerSpec, type RouteTable, type UpstreamSpec } from './types.js'

export interface ClusterTable {
  readonly cluster: string
  readonly table: RouteTable
}

export interface MergeOptions {
  /** The merged table's version; the caller numbers tables. */
  readonly version: number
  /**
   * The hostname suffix the clusters' tables were computed with (default
   * `localhost`), to name an L4 listener's Service once it shares a port.
   */
  readonly hostnameSuffix?: string
}

export type MergeConflictKind = 'hostname' | 'default'

export interface MergeConflict {
  readonly listener: string
  readonly kind: MergeConflictKind
  /** The contested hostname (kind `hostname`). */
  readonly name?: string
  /** Upstream id that keeps the name or the default; absent when nobody does. */
  readonly winner?: string
  /** Upstream id that lost it. */
  readonly loser: string
  readonly message: string
}

export interface MergeResult {
  readonly table: RouteTable
  readonly conflicts: MergeConflict[]
  /** Listener key → the clusters whose tables contributed to it, sorted. */
  readonly owners: ReadonlyMap<string, readonly string[]>
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

interface Part { readonly cluster: string, readonly spec: ListenerSpec }

/** `<service>.<namespace>.<suffix>` from a single-Service owner label `namespace/name`. */
function generatedName (owner: string | undefined, suffix: string): string | undefined {
  if (owner === undefined || owner.includes(',')) return undefined
  const slash = owner.indexOf('/')
  if (slash <= 0 || slash === owner.length - 1) return undefined
  const n = normalizeHostname(`${owner.slice(slash + 1)}.${owner.slice(0, slash)}.${suffix}`)
  return n ?? undefined
}

function withRanges (names: string[], upstream: UpstreamSpec, ranges: readonly string[] | undefined): HostRoute {
  return { names, upstream, ...(ranges !== undefined && ranges.length > 0 ? { sourceRanges: ranges } : {}) }
}

interface NameClaim { readonly route: Omit<HostRoute, 'names'>, readonly names: readonly string[], readonly cluster: string }

function claimantOf (c: NameClaim, name: string, suffix: string): NameClaimant {
  const svc = c.route.upstream.service
  if (svc === undefined) return { generated: false, createdMs: Number.POSITIVE_INFINITY, key: c.route.upstream.id, cluster: c.cluster }
  const key = `${svc.namespace}/${svc.name}`
  return { generated: generatedName(key, suffix) === name, createdMs: timestampMs(svc.created), key, cluster: c.cluster }
}

/** Each contested name to its best claimant (nameClaimOrder); every loser is reported once per name. */
function settleNames (key: string, claims: readonly NameClaim[], suffix: string, conflicts: MergeConflict[]): HostRoute[] {
  const owner = new Map<string, NameClaim>()
  for (const c of claims) {
    for (const n of c.names) {
      const cur = owner.get(n)
      if (cur === undefined || (cur.route.upstream.id !== c.route.upstream.id && nameClaimOrder(claimantOf(c, n, suffix), claimantOf(cur, n, suffix)) < 0)) owner.set(n, c)
    }
  }
  const routes: HostRoute[] = []
  for (const c of claims) {
    const won: string[] = []
    for (const n of c.names) {
      const w = owner.get(n) as NameClaim
      if (w === c) { won.push(n); continue }
      if (w.route.upstream.id === c.route.upstream.id) continue
      conflicts.push({
        listener: key,
        kind: 'hostname',
        name: n,
        winner: w.route.upstream.id,
        loser: c.route.upstream.id,
        message: `hostname ${n} on ${key} is already served by ${w.route.upstream.id}; not routed to ${c.route.upstream.id}`,
      })
    }
    if (won.length > 0) routes.push({ ...c.route, names: [...new Set(won)].sort(cmp) })
  }
  return routes.sort((a, b) => cmp(a.upstream.id, b.upstream.id))
}

function mergeShared (key: string, parts: readonly Part[], suffix: string, conflicts: MergeConflict[]): ListenerSpec {
  const first = parts[0] as Part
  const claims: NameClaim[] = []
  let def: UpstreamSpec | undefined
  const claim = (names: readonly string[], route: Omit<HostRoute, 'names'>, cluster: string): void => {
    claims.push({ route, names, cluster })
  }
  for (const p of parts) {
    for (const r of p.spec.routes) claim(r.names, r, p.cluster)
    const d = p.spec.default
    if (d === undefined) continue
    const ranged = p.spec.sourceRanges !== undefined && p.spec.sourceRanges.length > 0
    if (p.spec.routes.length === 0) {
      // Plain L4 in its own cluster: give it a name now that the port is shared.
      const n = generatedName(p.spec.owner, suffix)
      if (n !== undefined) claim([n], withRanges([], d, p.spec.sourceRanges), p.cluster)
    }
    if (ranged) {
      conflicts.push({
        listener: key,
        kind: 'default',
        loser: d.id,
        ...(def !== undefined ? { winner: def.id } : {}),
        message: `${d.id} has loadBalancerSourceRanges, which a shared port cannot enforce for its default; it answers on ${key} by name only`,
      })
    } else if (def === undefined) {
      def = d
    } else if (def.id !== d.id) {
      conflicts.push({
        listener: key,
        kind: 'default',
        winner: def.id,
        loser: d.id,
        message: `${key} can have one default; ${def.id} keeps it, ${d.id} answers by name only`,
      })
    }
  }
  const routes = settleNames(key, claims, suffix, conflicts)
  const ranges = narrowRanges(parts.map((p) => p.spec.sourceRanges))
  const caps = parts.map((p) => p.spec.maxConnections).filter((m): m is number => m !== undefined)
  return {
    host: first.spec.host,
    port: first.spec.port,
    routes,
    ...(def !== undefined ? { default: def } : {}),
    ...(ranges.length > 0 ? { sourceRanges: ranges } : {}),
    ...(caps.length > 0 ? { maxConnections: Math.min(...caps) } : {}),
    owner: parts.map((p) => `${p.cluster}:${p.spec.owner ?? '?'}`).join(','),
  }
}

export function mergeTables (inputs: readonly ClusterTable[], opts: MergeOptions): MergeResult {
  const suffix = normalizeHostname(opts.hostnameSuffix ?? 'localhost') ?? 'localhost'
  const sorted = [...inputs].sort((a, b) => cmp(a.cluster, b.cluster))
  const byKey = new Map<string, Part[]>()
  for (const { cluster, table } of sorted) {
    for (const spec of table.listeners) {
      // A UDP listener never merges with the TCP one on the same address and port.
      const k = listenerKey(spec) + (spec.protocol === 'udp' ? '/udp' : '')
      let arr = byKey.get(k)
      if (arr === undefined) byKey.set(k, arr = [])
      arr.push({ cluster, spec })
    }
  }
  const conflicts: MergeConflict[] = []
  const owners = new Map<string, string[]>()
  const listeners: ListenerSpec[] = []
  for (const [k, parts] of byKey) {
    owners.set(k, [...new Set(parts.map((p) => p.cluster))].sort(cmp))
    // Datagrams cannot be routed by name: of several clusters' UDP listeners on one port, the first cluster's serves.
    listeners.push(parts.length === 1 || (parts[0] as Part).spec.protocol === 'udp' ? (parts[0] as Part).spec : mergeShared(k, parts, suffix, conflicts))
  }
  sortListeners(listeners) // as computeRoutes orders them
  return { table: { version: opts.version, listeners }, conflicts, owners }
}
