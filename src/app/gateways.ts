// The Gateways section of `kind-tunnel status`: each Gateway a cluster's
// controller saw, the Service found behind it (and how), and its hostnames
// with the URLs that reach them. Read from the controllers' snapshots in
// UpStatus, so `status --json` carries the same under clusters[].controller.

import type { GatewayPlan } from '../routing/compute.js'
import type { UpStatus } from './status.js'

export interface ClusterGateway extends GatewayPlan {
  readonly cluster: string
}

/**
 * Every Gateway of every cluster, sorted by cluster then key. A name that
 * lost to another cluster on the shared port (`st.conflicts`, the merge
 * rule) is marked not served.
 */
export function gatewaysOf (st: Pick<UpStatus, 'clusters'> & Partial<Pick<UpStatus, 'conflicts'>>): ClusterGateway[] {
  const out: ClusterGateway[] = []
  const lost = (cluster: string, services: readonly string[], name: string, port: number): boolean =>
    (st.conflicts ?? []).some((c) => c.kind === 'hostname' && c.name === name && services.some((s) => c.loser === `${cluster}/${s}:${port}`))
  for (const c of st.clusters) {
    const gws = (c.controller as { gateways?: readonly GatewayPlan[] } | undefined)?.gateways
    if (!Array.isArray(gws)) continue
    for (const g of gws as readonly GatewayPlan[]) {
      out.push({ ...g, cluster: c.name, hostnames: g.hostnames.map((h) => h.served && lost(c.name, g.services, h.name, h.servicePort) ? { ...h, served: false } : h) })
    }
  }
  return out.sort((a, b) => (a.cluster < b.cluster ? -1 : a.cluster > b.cluster ? 1 : a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
}

/** Lines for `status`; none when no cluster has a Gateway. */
export function formatGateways (st: Pick<UpStatus, 'clusters'> & Partial<Pick<UpStatus, 'conflicts'>>): string[] {
  const gws = gatewaysOf(st)
  if (gws.length === 0) return []
  const out = ['gateways:']
  for (const g of gws) {
    const svc = g.services.length > 0 ? `→ Service ${g.services.join(', ')} (found by ${g.foundBy ?? '?'})` : '→ no Service found'
    const cls = g.className !== undefined ? `, class ${g.className}` : ''
    out.push(`  ${g.cluster}/${g.key}${cls} ${svc}`)
    for (const h of g.hostnames) {
      const where = h.url ?? `${h.name} (${h.scheme === 'http' ? 'Host' : 'SNI'})`
      out.push(`    ${where}  ${h.route}, listener ${h.listener}${h.served ? '' : '  (not routed: the name is held by another Service or cluster)'}`)
    }
    for (const p of g.problems) out.push(`    ! ${p.reason}: ${p.message}`)
  }
  return out
}
