// Status and Event planning (issue #15: control-plane work, moved out of
// routing/): given a Service as the cache shows it and its ServicePlan,
// whether status.loadBalancer must be written, and the Events that go with
// that write. Assigned/Updated and the per-port complaints accompany a
// status change, so a steady state emits nothing; the plan's own warnings
// and failures are level-triggered and the controller dedupes them
// (docs/addressing.md). Pure.

import type { Finding, LoadBalancerIngress, ServicePlan } from '../routing/compute.js'
import type { KubeLoadBalancerIngress, KubeService } from '../routing/kube.js'

export type PlanEventKind = 'assigned' | 'updated' | 'unsupported' | Finding['kind']

/** A Kubernetes Event the controller records on a Service. */
export interface PlanEvent {
  readonly type: 'Normal' | 'Warning'
  readonly kind: PlanEventKind
  /** CamelCase, for the Event's `reason`. */
  readonly reason: string
  readonly message: string
}

/** A routing finding (failed or ignored input) as the Warning Event that reports it. */
export function findingEvent (f: Finding): PlanEvent {
  return { type: 'Warning', kind: f.kind, reason: f.reason, message: f.message }
}

export interface StatusPlan {
  /** Whether the plan's ingress differs from the Service's current status. */
  readonly changed: boolean
  /** Events to record once the status write happened (assigned, updated, unsupported). */
  readonly events: readonly PlanEvent[]
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

function portStatusKey (p: { port?: number, protocol?: string, error?: string }): string {
  return `${p.port ?? ''}/${p.protocol ?? 'TCP'}/${p.error ?? ''}`
}

function ingressKey (i: KubeLoadBalancerIngress | LoadBalancerIngress): string {
  const ports = (i.ports ?? []).map(portStatusKey).sort(cmp).join(',')
  return `${i.ip ?? ''}|${i.hostname ?? ''}|${i.ipMode ?? ''}|${ports}`
}

/** Same entries in any order; ipMode ignored when the server drops it. */
export function sameStatus (current: readonly KubeLoadBalancerIngress[], desired: readonly LoadBalancerIngress[]): boolean {
  // An API server without the LoadBalancerIPMode feature (before 1.30 by
  // default) drops ipMode on write; comparing it then would patch forever.
  const noIpMode = current.length > 0 && current.every((i) => i.ipMode === undefined || i.ipMode === null)
  const strip = (i: KubeLoadBalancerIngress | LoadBalancerIngress): KubeLoadBalancerIngress => {
    if (!noIpMode) return i
    const { ipMode: _drop, ...rest } = i
    return rest
  }
  const a = current.map((i) => ingressKey(strip(i))).sort(cmp)
  const b = desired.map((i) => ingressKey(strip(i))).sort(cmp)
  return a.length === b.length && a.every((k, i) => k === b[i])
}

export function planStatus (svc: KubeService, plan: ServicePlan): StatusPlan {
  const current = svc.status?.loadBalancer?.ingress ?? []
  // A cleanup clears whatever is there; its events come from the cleanup itself.
  if (plan.action === 'cleanup') return { changed: current.length > 0, events: [] }
  const ingress = plan.ingress
  const changed = !sameStatus(current, ingress)
  const events: PlanEvent[] = []
  if (changed && ingress.length > 0) {
    const where = ingress.map((i) => i.ip ?? i.hostname).join(', ')
    events.push(current.length === 0
      ? { type: 'Normal', kind: 'assigned', reason: 'EnsuredLoadBalancer', message: `assigned ${where}` }
      : { type: 'Normal', kind: 'updated', reason: 'UpdatedLoadBalancer', message: `now ${where}` })
    for (const p of plan.ports) {
      if (p.error !== undefined && p.message !== undefined) {
        events.push({ type: 'Warning', kind: 'unsupported', reason: p.error.slice(p.error.indexOf('/') + 1), message: p.message })
      }
    }
  } else if (changed) {
    events.push({ type: 'Normal', kind: 'updated', reason: 'UpdatedLoadBalancer', message: 'status cleared' })
  }
  return { changed, events }
}
