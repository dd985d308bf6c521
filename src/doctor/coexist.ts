// Another load-balancer controller on a cluster kind-tunnel serves. Pure:
// the containers and Services are given.

import { cidrContainsIp, type Cidr } from '../routing/cidr.js'
import type { CloudProviderKindContainer } from '../docker/cloud-provider-kind.js'
import type { CheckLine } from './checks.js'

export interface LbService {
  readonly metadata?: { readonly name?: string, readonly namespace?: string }
  readonly spec?: { readonly type?: string, readonly loadBalancerClass?: string | null }
  readonly status?: { readonly loadBalancer?: { readonly ingress?: ReadonlyArray<{ readonly ip?: string, readonly hostname?: string }> } }
}

const FIX = 'run one load-balancer controller per cluster: stop cloud-provider-kind, or give the Services kind-tunnel should serve `spec.loadBalancerClass: kind-tunnel.dev/lb` (cloud-provider-kind skips classed Services)'

/**
 * FAIL when cloud-provider-kind runs for one of `clusters`, or when a
 * class-less LoadBalancer Service's status names an address outside
 * kind-tunnel's pools (someone else wrote it): both controllers would claim
 * the same Services and overwrite each other's status. kind-tunnel leaves a
 * Service alone once another controller has written its status.
 */
export function checkCoexistence (o: {
  readonly containers: readonly CloudProviderKindContainer[]
  readonly clusters: readonly string[]
  readonly services?: ReadonlyArray<{ readonly cluster: string, readonly items: readonly LbService[] }>
  readonly pools: readonly Cidr[]
}): CheckLine[] {
  const lines: CheckLine[] = []
  for (const cluster of o.clusters) {
    const mine = o.containers.filter((c) => c.cluster === cluster && c.state === 'running')
    const svcs = o.services?.find((s) => s.cluster === cluster)?.items ?? []
    const foreign = svcs.filter((s) => s.spec?.type === 'LoadBalancer' && (s.spec.loadBalancerClass ?? '') === '' &&
      (s.status?.loadBalancer?.ingress ?? []).some((i) => (i.ip !== undefined && i.ip !== '' && !o.pools.some((p) => cidrContainsIp(p, i.ip as string)))))
      .map((s) => `${s.metadata?.namespace ?? 'default'}/${s.metadata?.name ?? ''}`)
    if (mine.length === 0 && foreign.length === 0) continue
    const what: string[] = []
    if (mine.length > 0) {
      const served = mine.map((c) => c.service).filter((x) => x !== undefined)
      what.push(`cloud-provider-kind runs for it (${mine.length} container${mine.length === 1 ? '' : 's'}: ${mine.map((c) => c.name).slice(0, 3).join(', ')}${mine.length > 3 ? ', ...' : ''}${served.length > 0 ? `; serving ${served.slice(0, 3).join(', ')}${served.length > 3 ? ', ...' : ''}` : ''})`)
    }
    if (foreign.length > 0) what.push(`${foreign.length} class-less LoadBalancer Service${foreign.length === 1 ? ' has' : 's have'} a status another controller wrote (${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', ...' : ''})`)
    lines.push({
      check: 'lb-controllers',
      status: 'FAIL',
      message: `cluster ${cluster}: ${what.join('; ')}. Both claim every class-less LoadBalancer Service: they would overwrite each other's status and cloud-provider-kind removes the shared finalizer from any Service being deleted; kind-tunnel leaves a Service alone once another controller wrote its status`,
      fix: FIX,
    })
  }
  if (lines.length === 0 && o.clusters.length > 0) lines.push({ check: 'lb-controllers', status: 'ok', message: 'no other load-balancer controller (cloud-provider-kind) seen' })
  return lines
}
