// What a controller shows of itself (the `status` command and the control
// socket read it): the snapshot types, and the per-Service view built from
// the last plan, the sync state and the last apply. Pure.

import type { ComputeResult, GatewayPlan, ServicePlan } from '../routing/compute.js'
import type { InformerHealth } from './informers.js'

export interface PortSnapshot {
  readonly port: number
  readonly protocol: string
  readonly nodePort?: number
  readonly status: 'served' | 'unsupported'
  readonly error?: string
  readonly listeners: readonly string[]
  /** Every listener of this port is bound. */
  readonly up: boolean
}

export interface ServiceSnapshot {
  readonly key: string
  readonly action: 'serve' | 'cleanup' | 'failed'
  readonly reason?: string
  readonly ip?: string
  readonly hostnames: readonly string[]
  readonly ports: readonly PortSnapshot[]
  /** Backend endpoints (`nodeIP:nodePort`) per upstream id. */
  readonly backends: Readonly<Record<string, readonly string[]>>
  readonly nodes: readonly string[]
  readonly readyEndpoints?: number
  /** The Service's status shows what the plan wants (patched by us, or already so). */
  readonly statusPatched: boolean
  readonly finalizer: boolean
  readonly lastError?: { readonly code: string, readonly message: string, readonly at: string }
  /** Next retry of a failed write, in ms from now. */
  readonly retryInMs?: number
}

export interface ControllerSnapshot {
  readonly cluster: string
  readonly server: string
  readonly synced: boolean
  /** RouteTable.version last applied. */
  readonly version: number
  readonly reconciles: number
  readonly lastReconcileAt?: string
  readonly lastReconcileMs?: number
  readonly listeners: { readonly count: number, readonly failed: ReadonlyArray<{ key: string, code: string, message: string }> }
  readonly services: readonly ServiceSnapshot[]
  /** Gateways seen (hostname mode, Gateway API CRDs installed), with their names. */
  readonly gateways: readonly GatewayPlan[]
  /** Gateway API resources watched, `plural` → version; empty when the CRDs are not installed. */
  readonly gatewayApi: Readonly<Record<string, string>>
  /** LB IPs this controller has bound (ip mode). */
  readonly addresses: readonly string[]
  readonly informers: readonly InformerHealth[]
  /**
   * The API keeps refusing kind-tunnel (401: credentials expired or revoked;
   * 403: a verb is missing) on an informer that is not watching: what
   * `status` shows for the cluster.
   */
  readonly apiProblem?: { readonly code: string, readonly message: string, readonly since: string }
}

/** The sync layer's state of one Service, as far as the snapshot shows it. */
export interface SyncStateView {
  readonly statusPatched: boolean
  /** The last pass found the status differing from the plan. */
  readonly statusChanged: boolean
  readonly lastError: { readonly code: string, readonly message: string, readonly at: number } | undefined
  readonly retryAt: number
}

/** Endpoints as `host:port` (`[v6]:port`) per upstream id of a table. */
function endpointsById (last: ComputeResult | undefined): Map<string, string[]> {
  const endpoints = new Map<string, string[]>()
  for (const l of last?.table.listeners ?? []) {
    for (const up of [l.default, ...l.routes.map((r) => r.upstream)]) {
      if (up === undefined || endpoints.has(up.id)) continue
      endpoints.set(up.id, up.endpoints.map((e) => (e.host.includes(':') ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`)))
    }
  }
  return endpoints
}

export function serviceSnapshots (
  last: ComputeResult | undefined,
  failed: ReadonlyMap<string, unknown>,
  lookup: (plan: ServicePlan) => { state: SyncStateView | undefined, finalizer: boolean },
  now = Date.now(),
): ServiceSnapshot[] {
  const endpoints = endpointsById(last)
  const services: ServiceSnapshot[] = []
  for (const plan of last?.services ?? []) {
    const { state: st, finalizer } = lookup(plan)
    const backends: Record<string, readonly string[]> = {}
    for (const p of plan.ports) if (p.upstream !== undefined) backends[p.upstream] = endpoints.get(p.upstream) ?? []
    services.push({
      key: plan.key,
      action: plan.action,
      ...(plan.reason !== undefined ? { reason: plan.reason } : {}),
      ...(plan.ip !== undefined ? { ip: plan.ip } : {}),
      hostnames: plan.hostnames,
      ports: plan.ports.map((p) => ({
        port: p.port,
        protocol: p.protocol,
        ...(p.nodePort !== undefined ? { nodePort: p.nodePort } : {}),
        status: p.status,
        ...(p.error !== undefined ? { error: p.error } : {}),
        listeners: p.listeners,
        up: p.status === 'served' && p.listeners.every((k) => !failed.has(k)),
      })),
      backends,
      nodes: plan.nodes,
      ...(plan.readyEndpoints !== undefined ? { readyEndpoints: plan.readyEndpoints } : {}),
      statusPatched: st?.statusPatched === true || (st !== undefined && !st.statusChanged),
      finalizer,
      ...(st?.lastError !== undefined ? { lastError: { code: st.lastError.code, message: st.lastError.message, at: new Date(st.lastError.at).toISOString() } } : {}),
      ...(st !== undefined && st.retryAt > now ? { retryInMs: st.retryAt - now } : {}),
    })
  }
  return services
}
