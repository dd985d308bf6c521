// What the native accept lane can carry and how: the plan of a listener's
// upstream groups, hostname routes and source ranges as the lane takes them
// (lanePlan), and why a listener stays on the JS path (laneIneligibility).
// Pure functions of a ListenerConfig; fastlane.ts pushes what they give.

import { isIP } from 'node:net'
import { parseCidr } from '../routing/cidr.js'
import { normalizeHostname } from '../routing/hostmatch.js'
import type { ListenerConfig } from './context.js'
import { effectivePoolSize, type PoolSizeSetting } from './pool.js'
import type { Upstream } from './upstream.js'

/** Native backend slots (kt_lane.h KT_LANE_MAX_BACKENDS). */
export const MAX_BACKEND_IDS = 65536

/**
 * What the lane needs of a listener: its upstream groups (the default first,
 * then every routed upstream once), the default's group (-1: none) and the
 * hostname routes as native matches them.
 */
export interface LanePlan {
  readonly routed: boolean
  readonly groups: readonly Upstream[]
  readonly defaultGroup: number
  /** Normal-form names; for a wildcard the suffix without `*.`. */
  readonly names: readonly string[]
  readonly wild: readonly number[]
  readonly routeGroups: readonly number[]
  /** Per name entry: its route's source-range set in aclSets, -1 for everyone. */
  readonly routeAcls: readonly number[]
  /** The listener's own set in aclSets, -1 for everyone. */
  readonly listenerAcl: number
  /** Distinct sets of CIDR strings, as the spec gives them (listener.ts parsed them already). */
  readonly aclSets: readonly (readonly string[])[]
}

const ranged = (cidrs: readonly string[] | undefined): cidrs is readonly string[] => cidrs !== undefined && cidrs.length > 0

/**
 * The lane's view of a listener config, or undefined when a route cannot be
 * carried natively (an upstream not found). Names are read exactly as HostMatcher's constructor reads them
 * (trim, `*.` prefix, normalizeHostname; the first of duplicates wins), so
 * the native matcher answers as HostMatcher.match does.
 */
export function lanePlan (cfg: ListenerConfig, upstreamOf: (id: string) => Upstream | undefined): LanePlan | undefined {
  const groups: Upstream[] = []
  const def = cfg.defaultUpstream
  if (def !== undefined) groups.push(def)
  const routed = cfg.peek || cfg.matcher !== undefined
  const names: string[] = []
  const wild: number[] = []
  const routeGroups: number[] = []
  const routeAcls: number[] = []
  const aclSets: Array<readonly string[]> = []
  const aclIndex = new Map<string, number>()
  const aclOf = (cidrs: readonly string[] | undefined): number => {
    if (!ranged(cidrs)) return -1
    // Native is handed canonical text only (listener-manager.ts parsed every range already).
    const canon = cidrs.map((c) => parseCidr(c, { bare: true }).text)
    const key = canon.join(',')
    let i = aclIndex.get(key)
    if (i === undefined) { i = aclSets.push(canon) - 1; aclIndex.set(key, i) }
    return i
  }
  const listenerAcl = aclOf(cfg.spec.sourceRanges)
  if (routed) {
    const seen = [new Set<string>(), new Set<string>()]
    for (const r of cfg.spec.routes) {
      const acl = aclOf(r.sourceRanges)
      const up = upstreamOf(r.upstream.id)
      if (up === undefined) return undefined
      let g = groups.indexOf(up)
      if (g < 0) g = groups.push(up) - 1
      for (const raw of r.names) {
        const trimmed = raw.trim()
        const isWild = trimmed.startsWith('*.')
        const name = normalizeHostname(isWild ? trimmed.slice(2) : trimmed)
        if (name === undefined) return undefined // HostMatcher would have refused the config
        const set = seen[isWild ? 1 : 0] as Set<string>
        if (set.has(name)) continue
        set.add(name)
        names.push(name)
        wild.push(isWild ? 1 : 0)
        routeGroups.push(g)
        routeAcls.push(acl)
      }
    }
  }
  return { routed, groups, defaultGroup: def === undefined ? -1 : 0, names, wild, routeGroups, routeAcls, listenerAcl, aclSets }
}

/**
 * Why the lane cannot take this listener, in a few words for `kind-tunnel
 * status`; undefined when it can. It can when every upstream it can route to
 * is direct-dialed to IP backends, without PROXY protocol or warm pool,
 * round-robin or least-connections, all with one policy. Listeners with
 * hostname routes need `upstreamOf` (to find the routes' upstreams). Source
 * ranges are carried as they are (listener-manager.ts parsed them already,
 * and the native parser reads that syntax).
 */
export function laneIneligibility (cfg: ListenerConfig, poolSizeDefault: PoolSizeSetting, upstreamOf?: (id: string) => Upstream | undefined): string | undefined {
  const peeks = cfg.peek || cfg.matcher !== undefined
  if (peeks && upstreamOf === undefined) return 'hostname routes (no upstream lookup)'
  if (!peeks && cfg.defaultUpstream === undefined) return 'no upstream'
  const plan = lanePlan(cfg, upstreamOf ?? (() => undefined))
  if (plan === undefined) return 'a route the lane cannot carry'
  let backends = 0
  // The lane balances with one policy per listener: routes to upstreams of
  // different policies (round-robin and least-connections) stay on JS, where
  // each upstream keeps its own.
  const policy = plan.groups[0]?.policy
  for (const up of plan.groups) {
    const us = up.spec
    if (up.policy !== policy) return `upstreams with different policies (${String(policy)}, ${up.policy})`
    if ((us.dialer ?? 'direct') !== 'direct') return `dialer ${String(us.dialer)}`
    if (us.proxyProtocol !== undefined) return `PROXY protocol ${us.proxyProtocol} (${up.id})`
    const pool = effectivePoolSize(us.poolSize, poolSizeDefault, us.dialer)
    if (pool !== 0) return `warm pool of ${pool} (${up.id})`
    if (up.policy !== 'round-robin' && up.policy !== 'least-connections') return `policy ${up.policy} (${up.id})`
    // Native connects to addresses only: a name would need a resolver per connect.
    for (const b of up.backends) if (isIP(b.endpoint.host) === 0) return `backend ${b.endpoint.host} is a name, not an address`
    backends += up.backends.length
  }
  return backends < MAX_BACKEND_IDS ? undefined : `over ${MAX_BACKEND_IDS - 1} backends`
}
