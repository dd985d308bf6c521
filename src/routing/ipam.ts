// Load-balancer IP allocation from one pool. Pure: the caller passes the
// Services that want an address (handled, not being deleted) and what it
// allocated last time; everything else is released simply by not being
// passed in. The same input always gives the same output.
//
// Stability across restarts comes from the Service itself: the address we
// wrote into status.loadBalancer.ingress[].ip is read back and kept. An
// explicit request (spec.loadBalancerIP, or the kind-tunnel.dev/ip annotation)
// comes before that, so editing the request moves the Service; but an address
// some other Service already holds is never taken from it.

import { type Cidr, formatIp, parseCidr, parseIp, usableRange, cidrContains } from './cidr.js'
import { type KubeService, objectKey, olderFirst } from './kube.js'

export const ANNOTATION_IP = 'kind-tunnel.dev/ip'

export interface AllocationFailure {
  readonly key: string
  readonly code: 'KT_ERR_IP_POOL_EXHAUSTED'
  readonly message: string
}

/** A request that could not be honoured; the Service still got an address. */
export interface AllocationWarning {
  readonly key: string
  readonly reason: 'RequestedIPOutsidePool' | 'RequestedIPTaken' | 'RequestedIPInvalid'
  readonly requested: string
  readonly message: string
}

export interface AllocationResult {
  /** `namespace/name` → canonical IP text, sorted by key. */
  readonly allocations: Map<string, string>
  readonly failures: AllocationFailure[]
  readonly warnings: AllocationWarning[]
}

export interface AllocateOptions {
  /** Addresses never to hand out (e.g. the hostname-mode listen address when it falls inside the pool). */
  readonly reserved?: readonly string[]
}

interface Parsed { family: 4 | 6, value: bigint }

function inPool (pool: Cidr, range: { first: bigint, last: bigint }, p: Parsed | null): p is Parsed {
  return p !== null && cidrContains(pool, p.family, p.value) && p.value >= range.first && p.value <= range.last
}

/** The address a Service holds today: what we allocated last time, else what its status says. */
function heldAddress (svc: KubeService, key: string, pool: Cidr, range: { first: bigint, last: bigint }, previous: ReadonlyMap<string, string>): bigint | undefined {
  const prev = previous.get(key)
  const candidates = [prev, ...(svc.status?.loadBalancer?.ingress ?? []).map((i) => i.ip)]
  for (const c of candidates) {
    if (typeof c !== 'string') continue
    const p = parseIp(c)
    if (inPool(pool, range, p)) return p.value
  }
  return undefined
}

export function allocate (
  services: readonly KubeService[],
  poolIn: Cidr | string,
  previous: ReadonlyMap<string, string> = new Map(),
  opts: AllocateOptions = {},
): AllocationResult {
  const pool = typeof poolIn === 'string' ? parseCidr(poolIn, { strict: true, what: '--ip-pool' }) : poolIn
  const range = usableRange(pool)
  const fmt = (v: bigint): string => formatIp(pool.family, v)

  // Oldest first, so every tie (two Services wanting one address) goes the
  // same way on every run; a key seen twice is served once.
  const seen = new Set<string>()
  const ordered: Array<{ svc: KubeService, key: string }> = []
  for (const svc of [...services].sort(olderFirst)) {
    const key = objectKey(svc)
    if (seen.has(key)) continue
    seen.add(key)
    ordered.push({ svc, key })
  }

  const reserved = new Set<bigint>()
  for (const r of opts.reserved ?? []) {
    const p = parseIp(r)
    if (p !== null && cidrContains(pool, p.family, p.value)) reserved.add(p.value)
  }

  // Pass 1: every Service keeps a claim on the address it holds, so a newer
  // Service's explicit request cannot take it away.
  const holder = new Map<bigint, string>()
  const heldBy = new Map<string, bigint>()
  for (const { svc, key } of ordered) {
    const h = heldAddress(svc, key, pool, range, previous)
    if (h === undefined || reserved.has(h) || holder.has(h)) continue
    holder.set(h, key)
    heldBy.set(key, h)
  }

  const assigned = new Map<bigint, string>()
  const allocations = new Map<string, string>()
  const failures: AllocationFailure[] = []
  const warnings: AllocationWarning[] = []
  const takenBy = (v: bigint, key: string): string | undefined => {
    const a = assigned.get(v)
    if (a !== undefined && a !== key) return a
    const h = holder.get(v)
    if (h !== undefined && h !== key) return h
    return reserved.has(v) ? '(reserved)' : undefined
  }

  // Pass 2: explicit request, then the held address, then the lowest free.
  let cursor = range.first
  for (const { svc, key } of ordered) {
    let chosen: bigint | undefined
    const requests = [svc.spec?.loadBalancerIP, svc.metadata?.annotations?.[ANNOTATION_IP]]
      .filter((r): r is string => typeof r === 'string' && r.trim() !== '')
      .map((r) => r.trim())
    for (const r of requests) {
      const p = parseIp(r)
      if (p === null) {
        warnings.push({ key, reason: 'RequestedIPInvalid', requested: r, message: `requested address ${JSON.stringify(r)} is not an IP address` })
        continue
      }
      if (!inPool(pool, range, p)) {
        warnings.push({ key, reason: 'RequestedIPOutsidePool', requested: r, message: `requested address ${r} is not an allocatable address of pool ${pool.text}` })
        continue
      }
      const other = takenBy(p.value, key)
      if (other !== undefined) {
        warnings.push({ key, reason: 'RequestedIPTaken', requested: r, message: `requested address ${r} is already used by ${other}` })
        continue
      }
      chosen = p.value
      break
    }
    if (chosen === undefined) {
      const h = heldBy.get(key)
      if (h !== undefined && takenBy(h, key) === undefined) chosen = h
    }
    if (chosen === undefined) {
      // Every address below `cursor` is assigned, held or reserved, and stays
      // so for the rest of this pass (a Service that reaches this walk holds
      // nothing of its own). Each step skips one such address, so the walk is
      // bounded by how many exist, never by the pool size.
      let v = cursor
      const bound = assigned.size + holder.size + reserved.size + 1
      for (let i = 0; i <= bound && v <= range.last && takenBy(v, key) !== undefined; i++) v++
      if (v <= range.last && takenBy(v, key) === undefined) {
        chosen = v
        cursor = v + 1n
      } else {
        cursor = v
      }
    }
    if (chosen === undefined) {
      failures.push({
        key,
        code: 'KT_ERR_IP_POOL_EXHAUSTED',
        message: `pool ${pool.text} has no free address left for ${key} (${assigned.size} in use)`,
      })
      continue
    }
    assigned.set(chosen, key)
    allocations.set(key, fmt(chosen))
  }

  const sorted = new Map([...allocations.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)))
  return { allocations: sorted, failures, warnings }
}
