// The controller: keeps the data plane, the host addresses and the Services'
// status in line with one cluster (issue #5).
//
// One reconcile at a time, level-triggered: informer caches → computeRoutes
// (pure) → ensure the LB IPs → sink.apply(table) → per Service: finalizer,
// status, events. A burst of changes is coalesced (debounce), and a change
// during a reconcile re-runs it once it ends. Failed writes are retried per
// Service with capped backoff while the data plane keeps serving.
//
// The status never promises a dead address: it is patched only once every
// listener of the Service's served ports is up in the ApplyResult.
//
// This file is the Service-sync layer (issue #15): queue and debounce,
// per-Service state and backoff, level-triggered Events. Its API writes are
// in service-api.ts (one status patch, one finalizer edit, one 409 retry),
// the addresses in provider.ts (plans them and alone owns the LB IPs), the
// status/Event planning in status-plan.ts, the snapshot in snapshot.ts.
//
// Over 500 lines: the reconcile pass and the per-Service sync share the
// pass's state and are read together.

import type { V1Service } from '@kubernetes/client-node'
import type { Addresses } from '../addresses/manager.js'
import type { ApplyResult } from '../dataplane/listener-manager.js'
import { KtError, errorCode } from '../errors.js'
import type { Logger } from '../observe/logger.js'
import type { Counter, Histogram, Registry } from '../observe/metrics.js'
import type { GatewayObjects, KubeGateway, KubeNamespace, KubeRoute } from '../routing/gateway.js'
import {
  type ComputeResult, FINALIZER, type GatewayPlan, isHandled, needsRelease, OWN_FINALIZER, type ObservedState,
  removableFinalizers, type RoutingOptions, type ServicePlan, statusIsForeign, statusIsOurs, statusOwner, statusPoolIp, type StatusOwner,
  validateRoutingOptions, wantedFinalizers,
} from '../routing/compute.js'
import type { KubeEndpointSlice, KubeIngress, KubeIngressClass, KubeNode, KubeService } from '../routing/kube.js'
import { listenerKey, type RouteTable } from '../routing/types.js'
import { Backoff, type BackoffOptions } from './backoff.js'
import { EventRecorder } from './events.js'
import { type ClusterInformers, type GatewayApiInformers, type InformerTimings, startInformers } from './informers.js'
import { type KubeClients, kubeError, loadKubeConfig, makeClients, requestOptions, statusCodeOf } from './kube.js'
import { LoadBalancerProvider } from './provider.js'
import { isDeleting, refOf, ServiceWriter, type Svc } from './service-api.js'
import { type ControllerSnapshot, serviceSnapshots } from './snapshot.js'
import { findingEvent, type PlanEvent, planStatus, type StatusPlan } from './status-plan.js'

export type { ControllerSnapshot, PortSnapshot, ServiceSnapshot } from './snapshot.js'

/** Where tables go. The `up` command merges clusters; a single-cluster sink can call ListenerManager.apply directly. */
export interface RouteSink {
  apply (cluster: string, table: RouteTable): Promise<ApplyResult>
}

export interface ControllerOptions {
  /** Name used in upstream ids and logs. */
  cluster: string
  /** A kubeconfig YAML text or a file path. */
  kubeconfig: string
  routing: RoutingOptions
  sink: RouteSink
  /** Binds and unbinds LB IPs (ip mode); absent in hostname-only mode. */
  addresses?: Addresses
  logger: Logger
  metrics: Registry
  /** Coalesce bursts of changes; default 50 ms. */
  debounceMs?: number
  /** Informer restart and silence tuning (tests shorten them). */
  informers?: InformerTimings
  /** Backoff of failed per-Service writes and of failed listener binds; default 200 ms → 30 s. */
  retry?: BackoffOptions
  /** API writes in flight at once; default 16. */
  concurrency?: number
  /** `namespace/name` → IP from an earlier run (the state file): each Service gets its address back. */
  allocations?: ReadonlyMap<string, string>
  /** Called with the allocations whenever they change, and awaited before any address is bound or status written. */
  onAllocations?: (allocations: ReadonlyMap<string, string>) => Promise<void>
}

export interface Controller {
  /** First full list of every informer done and first reconcile applied. Rejects with KT_ERR_KUBE_FORBIDDEN when a required list is refused. */
  readonly synced: Promise<void>
  snapshot (): ControllerSnapshot
  /** Undo: remove our status entries and finalizers from every Service we manage, stop serving, release IPs. */
  cleanup (): Promise<void>
  /** Stop informers and timers (does NOT undo). */
  stop (): Promise<void>
}

interface SvcState {
  readonly key: string
  plan: ServicePlan | undefined
  uid: string | undefined
  statusPatched: boolean
  /** The last pass found the status differing from the plan (control/status-plan.ts). */
  statusChanged: boolean
  lastError: { code: string, message: string, at: number } | undefined
  backoff: Backoff
  retryAt: number
  /** Resource versions from before our last writes: until the cache moves past them, it does not show those writes yet. */
  staleRvs: ReadonlySet<string>
  /** Level-triggered events (failed, warning) emitted and still holding. */
  level: Set<string>
  loggedCode: string | undefined
}

interface PassContext {
  /** Listener key → failure, from this pass's ApplyResult. */
  readonly failedListeners: ReadonlyMap<string, { code: string, message: string }>
  /** IP → failure to bind it. */
  readonly addressErrors: ReadonlyMap<string, KtError>
  /** IPs that Services being served hold. */
  readonly wantIps: ReadonlySet<string>
}


function hasFinalizer (svc: Svc): boolean {
  const fins = svc.metadata?.finalizers ?? []
  return fins.includes(OWN_FINALIZER) || fins.includes(FINALIZER)
}

function hasOwnFinalizer (svc: Svc): boolean {
  return svc.metadata?.finalizers?.includes(OWN_FINALIZER) === true
}

/** The same rule computeRoutes uses: ours when handled, or when it carries a finalizer kind-tunnel may remove. */
function isManaged (svc: Svc, owner: StatusOwner): boolean {
  return isHandled(svc) || removableFinalizers(svc, owner).length > 0
}

/**
 * Another controller serves this Service: its status names an address
 * kind-tunnel did not give out, and kind-tunnel never finalized it.
 * kind-tunnel then writes neither status nor finalizers (no fight).
 */
function conflictOf (svc: Svc, owner: StatusOwner): string | undefined {
  if (hasOwnFinalizer(svc) || !statusIsForeign(svc, owner)) return undefined
  const where = (svc.status?.loadBalancer?.ingress ?? []).map((e) => e.ip ?? e.hostname).filter((x) => x !== undefined && x !== '').join(', ')
  return `status.loadBalancer already names ${where}, which kind-tunnel did not give out: another load-balancer controller (cloud-provider-kind?) serves this Service; kind-tunnel leaves its status and finalizers alone (give it spec.loadBalancerClass: kind-tunnel.dev/lb to choose kind-tunnel)`
}

async function limit<T> (items: readonly T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T
      await fn(item)
    }
  }
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker))
}

function gatewayObjects (g: GatewayApiInformers): GatewayObjects {
  return {
    gateways: g.list('gateways') as readonly KubeGateway[],
    httpRoutes: g.list('httproutes') as readonly KubeRoute[],
    grpcRoutes: g.list('grpcroutes') as readonly KubeRoute[],
    tlsRoutes: g.list('tlsroutes') as readonly KubeRoute[],
    namespaces: g.list('namespaces') as readonly KubeNamespace[],
  }
}

const eventKey = (e: { type: string, reason: string, message: string }): string => `${e.type}\0${e.reason}\0${e.message}`

class ServiceController implements Controller {
  readonly synced: Promise<void>
  readonly #o: ControllerOptions
  readonly #log: Logger
  readonly #clients: KubeClients
  readonly #events: EventRecorder
  readonly #inf: ClusterInformers
  readonly #debounceMs: number
  readonly #concurrency: number
  readonly #retry: BackoffOptions
  readonly #applyBackoff: Backoff
  readonly #m: { reconciles: Counter, duration: Histogram, writes: Counter }
  readonly #owner: StatusOwner
  #resolveSynced!: () => void
  #rejectSynced!: (err: Error) => void
  #syncedDone = false
  #ready = false
  /** Every informer listed and had a watch accepted (RBAC may allow list but not watch). */
  #watching = false
  #dirty = false
  #running: Promise<void> | undefined
  #debounce: NodeJS.Timeout | undefined
  #retryTimer: NodeJS.Timeout | undefined
  #retryAt = Number.POSITIVE_INFINITY
  #paused = false
  #stopped = false
  #version = 0
  #reconciles = 0
  #lastReconcileAt: number | undefined
  #lastReconcileMs: number | undefined
  /** Plans the addresses and owns the LB IPs. */
  readonly #provider: LoadBalancerProvider
  readonly #writer: ServiceWriter
  readonly #states = new Map<string, SvcState>()
  /** Gateway key → the warning events holding on it. */
  readonly #gatewayLevel = new Map<string, Set<string>>()
  #last: ComputeResult | undefined
  #lastApply: ApplyResult | undefined
  #lastFailedListeners = new Map<string, { code: string, message: string }>()

  constructor (o: ControllerOptions, clients: KubeClients) {
    this.#o = o
    this.#clients = clients
    this.#log = o.logger.child({ module: 'control', cluster: o.cluster })
    this.#events = new EventRecorder(clients.core, this.#log)
    this.#debounceMs = o.debounceMs ?? 50
    this.#concurrency = Math.max(1, o.concurrency ?? 16)
    this.#retry = o.retry ?? {}
    this.#applyBackoff = new Backoff(this.#retry)
    this.#owner = statusOwner(o.routing)
    this.#provider = new LoadBalancerProvider(o.routing, o.addresses, this.#log, { allocations: o.allocations, onAllocations: o.onAllocations })
    const r = o.metrics
    this.#m = {
      reconciles: r.counter('kt_controller_reconciles_total', 'Reconcile passes, by cluster and outcome.'),
      duration: r.histogram('kt_controller_reconcile_seconds', 'Duration of one reconcile pass (compute, addresses, apply, API writes).', [0.005, 0.02, 0.1, 0.5, 2, 10, 60]),
      writes: r.counter('kt_controller_api_writes_total', 'API writes by the controller, by cluster, kind (status, finalizer, event) and outcome (ok or an error code).'),
    }
    this.#writer = new ServiceWriter(clients, (kind, outcome) => { this.#m.writes.inc({ cluster: o.cluster, kind, outcome }) })
    const restarts = r.gauge('kt_informer_restarts', 'Informer restarts after a failure or a silent watch, by cluster and resource.')
    restarts.collect((set) => {
      for (const h of this.#inf.all.map((i) => i.health())) set({ cluster: o.cluster, resource: h.resource }, h.restarts)
    })
    const svcGauge = r.gauge('kt_controller_services', 'Services handled, by cluster and state (served, pending, failed, cleanup).')
    svcGauge.collect((set) => {
      const counts: Record<string, number> = { served: 0, pending: 0, failed: 0, cleanup: 0 }
      for (const st of this.#states.values()) {
        const p = st.plan
        if (p === undefined) continue
        const k = p.action === 'serve' ? (st.statusPatched ? 'served' : 'pending') : p.action
        counts[k] = (counts[k] ?? 0) + 1
      }
      for (const [state, n] of Object.entries(counts)) set({ cluster: o.cluster, state }, n)
    })
    this.synced = new Promise<void>((resolve, reject) => {
      this.#resolveSynced = resolve
      this.#rejectSynced = reject
    })
    this.synced.catch(() => {})
    const useNames = (o.routing.mode ?? 'hostname') !== 'ip'
    this.#inf = startInformers({
      clients,
      logger: this.#log,
      onChange: () => { this.#markDirty() },
      ingresses: useNames,
      ...(o.informers !== undefined ? { timings: o.informers } : {}),
    })
    this.#inf.synced.then(() => { this.#watching = true; this.#markDirty() }, () => {})
    this.#inf.synced.catch((err: unknown) => {
      this.#settleSynced(err instanceof Error ? err : new KtError('KT_ERR_KUBE_API', String(err)))
    })
  }

  #settleSynced (err?: Error): void {
    if (this.#syncedDone) return
    this.#syncedDone = true
    if (err === undefined) this.#resolveSynced()
    else this.#rejectSynced(err)
  }

  // ------------------------------------------------------------ scheduling

  #markDirty (): void {
    if (this.#paused) return
    if (!this.#ready) {
      this.#ready = this.#watching && this.#inf.ready
      if (!this.#ready) return
      // First time every cache is there: reconcile at once.
      this.#dirty = true
      this.#kick(0)
      return
    }
    this.#dirty = true
    this.#kick(this.#debounceMs)
  }

  #kick (delayMs: number): void {
    if (this.#paused || this.#running !== undefined || this.#debounce !== undefined) return
    this.#debounce = setTimeout(() => {
      this.#debounce = undefined
      void this.#run()
    }, delayMs)
  }

  async #run (): Promise<void> {
    if (this.#paused || this.#running !== undefined || !this.#dirty) return
    this.#dirty = false
    const run = this.#reconcile().catch((err: unknown) => {
      // computeRoutes and the per-Service steps do not throw; this is a bug
      // or a sink that threw something odd. Keep running; retry later.
      this.#log.error({ code: errorCode(err), err }, 'reconcile failed')
      this.#m.reconciles.inc({ cluster: this.#o.cluster, outcome: 'error' })
      this.#scheduleRetry(Date.now() + this.#applyBackoff.next())
    })
    this.#running = run
    await run
    this.#running = undefined
    if (this.#dirty) this.#kick(this.#debounceMs)
  }

  #scheduleRetry (at: number): void {
    if (this.#paused || !Number.isFinite(at)) return
    if (this.#retryTimer !== undefined && at >= this.#retryAt) return
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer)
    this.#retryAt = at
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined
      this.#retryAt = Number.POSITIVE_INFINITY
      this.#dirty = true
      this.#kick(0)
    }, Math.max(0, at - Date.now()))
  }

  // ------------------------------------------------------------ reconcile

  #observe (): Omit<ObservedState, 'allocations'> {
    return {
      cluster: this.#o.cluster,
      services: this.#inf.services.list() as readonly KubeService[],
      nodes: this.#inf.nodes.list() as readonly KubeNode[],
      endpointSlices: this.#inf.endpointSlices.list() as readonly KubeEndpointSlice[],
      ingresses: (this.#inf.ingresses?.list() ?? []) as readonly KubeIngress[],
      ingressClasses: (this.#inf.ingressClasses?.list() ?? []) as readonly KubeIngressClass[],
      ...(this.#inf.gatewayApi !== undefined ? { gatewayApi: gatewayObjects(this.#inf.gatewayApi) } : {}),
    }
  }

  async #reconcile (): Promise<void> {
    const t0 = performance.now()
    const version = ++this.#version
    const result = await this.#provider.plan(this.#observe(), version)
    this.#last = result

    // 1. Addresses (ip mode): every IP a served Service holds is bound before its listeners.
    const { wantIps, addressErrors } = await this.#provider.ensure(result)

    // 2. The data plane: a diff, so untouched listeners and their connections stay.
    let applied: ApplyResult
    try {
      applied = await this.#o.sink.apply(this.#o.cluster, result.table)
    } catch (err) {
      const code = errorCode(err)
      const message = `the data plane refused table ${version}: ${err instanceof Error ? err.message : String(err)}`
      this.#log.error({ code, version }, message)
      applied = { version, bound: [], kept: [], removed: [], failed: result.table.listeners.map((l) => ({ key: listenerKey(l), code, message })) }
    }
    this.#lastApply = applied
    const failedListeners = new Map(applied.failed.map((f) => [f.key, { code: f.code, message: f.message }]))
    this.#lastFailedListeners = failedListeners
    for (const b of applied.bound) this.#log.debug({ listener: b.key }, 'listener bound')

    // 3. Addresses no served Service holds any more (its listeners just closed).
    await this.#provider.releaseUnwanted(wantIps)

    // 4. Per Service: finalizer, status, events.
    const ctx: PassContext = { failedListeners, addressErrors, wantIps }
    await limit(result.services, this.#concurrency, async (plan) => { await this.#sync(plan, ctx) })
    await this.#gatewayEvents(result.gateways)
    const planned = new Set(result.services.map((p) => p.key))
    for (const key of [...this.#states.keys()]) if (!planned.has(key)) this.#states.delete(key)

    // 5. Retries: failed binds (the next apply binds them again) and failed writes.
    let next = Number.POSITIVE_INFINITY
    if (failedListeners.size > 0 || addressErrors.size > 0) next = Date.now() + this.#applyBackoff.next()
    else this.#applyBackoff.reset()
    for (const st of this.#states.values()) if (st.retryAt > 0) next = Math.min(next, st.retryAt)
    this.#scheduleRetry(next)

    this.#reconciles++
    this.#lastReconcileAt = Date.now()
    const seconds = (performance.now() - t0) / 1000
    this.#lastReconcileMs = Math.round(seconds * 1000)
    this.#m.reconciles.inc({ cluster: this.#o.cluster, outcome: 'ok' })
    this.#m.duration.observe(undefined, seconds)
    this.#settleSynced()
  }

  #state (key: string): SvcState {
    let st = this.#states.get(key)
    if (st === undefined) {
      st = {
        key,
        plan: undefined,
        uid: undefined,
        statusPatched: false,
        statusChanged: true,
        lastError: undefined,
        backoff: new Backoff(this.#retry),
        retryAt: 0,
        staleRvs: new Set(),
        level: new Set(),
        loggedCode: undefined,
      }
      this.#states.set(key, st)
    }
    return st
  }

  async #sync (plan: ServicePlan, ctx: PassContext): Promise<void> {
    const st = this.#state(plan.key)
    st.plan = plan
    const svc = this.#inf.services.get(plan.name, plan.namespace) as Svc | undefined
    if (svc === undefined) return
    st.uid = svc.metadata?.uid
    const status = planStatus(svc, plan)
    st.statusChanged = status.changed

    // Failures the data plane reported for this Service's listeners or address.
    const local: PlanEvent[] = []
    let blocked: { code: string, message: string } | undefined
    if (plan.action === 'serve') {
      const addrErr = plan.ip !== undefined ? ctx.addressErrors.get(plan.ip) : undefined
      if (addrErr !== undefined) {
        blocked = { code: addrErr.code, message: `cannot bind ${plan.ip ?? ''}: ${addrErr.message}` }
        local.push({ type: 'Warning', kind: 'failed', reason: 'AddressFailed', message: blocked.message })
      }
      for (const port of plan.ports) {
        if (port.status !== 'served') continue
        for (const key of port.listeners) {
          const f = ctx.failedListeners.get(key)
          if (f === undefined) continue
          blocked ??= { code: f.code, message: f.message }
          local.push({ type: 'Warning', kind: 'failed', reason: 'ListenFailed', message: `port ${port.port}: ${f.message}` })
        }
      }
    }
    const conflict = plan.action === 'serve' ? conflictOf(svc, this.#owner) : undefined
    if (conflict !== undefined) {
      blocked ??= { code: 'KT_ERR_LB_CONFLICT', message: conflict }
      local.push({ type: 'Warning', kind: 'warning', reason: 'LoadBalancerConflict', message: conflict })
    }
    await this.#levelEvents(st, svc, [...plan.findings.map(findingEvent), ...local])

    if (blocked !== undefined) {
      // Never promise a dead address: no status until every listener is up.
      // The next apply binds again (controller-level backoff).
      this.#setError(st, blocked.code, blocked.message)
      return
    }
    const rv = svc.metadata?.resourceVersion
    if (rv !== undefined && st.staleRvs.has(rv)) return // our last writes are not in the cache yet
    if (st.retryAt > Date.now()) return // backing off after a failed write
    try {
      if (plan.action === 'cleanup') await this.#cleanupOne(st, plan, svc, status, ctx)
      else await this.#serveOne(st, plan, svc, status)
      st.backoff.reset()
      st.retryAt = 0
      st.lastError = undefined
      st.loggedCode = undefined
    } catch (raw) {
      const err = raw instanceof KtError ? raw : kubeError(raw, { verb: 'update', resource: 'services', namespace: plan.namespace, name: plan.name })
      const delay = st.backoff.next()
      st.retryAt = Date.now() + delay
      const fresh = st.loggedCode !== err.code
      this.#setError(st, err.code, err.message, delay)
      // The upstream service controller's reason, so `kubectl describe svc`
      // says why: once per distinct failure, not once per retry.
      if (fresh) await this.#event(svc, { type: 'Warning', reason: 'SyncLoadBalancerFailed', message: `${err.code}: ${err.message}; retrying` })
    }
  }

  /**
   * Warnings on Gateways, level-triggered like the Services' ones: a name
   * another Service holds, a route hostname that meets no listener, a
   * listener without a Service port or with a bad hostname. (A missing
   * address or Service is the usual state of a Gateway just created:
   * `status` and `doctor` show it, no event.)
   */
  async #gatewayEvents (gateways: readonly GatewayPlan[]): Promise<void> {
    const inf = this.#inf.gatewayApi
    if (inf === undefined) return
    const version = inf.served.get('gateways') ?? 'v1'
    const seen = new Set<string>()
    for (const g of gateways) {
      seen.add(g.key)
      const events: PlanEvent[] = []
      for (const p of g.problems) {
        if (p.reason === 'NoAddress' || p.reason === 'NoService') continue
        events.push({ type: 'Warning', kind: 'warning', reason: p.reason, message: p.message })
      }
      for (const h of g.hostnames) {
        if (h.served) continue
        events.push({ type: 'Warning', kind: 'warning', reason: 'HostnameConflict', message: `hostname ${h.name} (${h.route}) is already served by another Service on the same port; not routed to ${g.services.join(', ')}` })
      }
      const before = this.#gatewayLevel.get(g.key) ?? new Set<string>()
      const now = new Set(events.map(eventKey))
      this.#gatewayLevel.set(g.key, now)
      const obj = inf.list('gateways').find((o) => o.metadata?.name === g.name && o.metadata?.namespace === g.namespace)
      if (obj === undefined) continue
      for (const e of events) {
        if (before.has(eventKey(e))) continue
        const w0 = this.#events.failed
        await this.#events.record({ namespace: g.namespace, name: g.name, uid: obj.metadata?.uid, resourceVersion: obj.metadata?.resourceVersion, kind: 'Gateway', apiVersion: `gateway.networking.k8s.io/${version}` }, e)
        this.#m.writes.inc({ cluster: this.#o.cluster, kind: 'event', outcome: this.#events.failed > w0 ? 'error' : 'ok' })
      }
    }
    for (const k of [...this.#gatewayLevel.keys()]) if (!seen.has(k)) this.#gatewayLevel.delete(k)
  }

  #setError (st: SvcState, code: string, message: string, retryInMs?: number): void {
    st.lastError = { code, message, at: Date.now() }
    if (st.loggedCode === code) return
    st.loggedCode = code
    this.#log.error({ service: st.key, code, ...(retryInMs !== undefined ? { retryInMs } : {}) }, message)
  }

  async #levelEvents (st: SvcState, svc: Svc, events: readonly PlanEvent[]): Promise<void> {
    // Failures and warnings hold on every pass while their cause does:
    // emit each when it first appears, again only after it went away.
    const now = new Set<string>()
    const fresh: PlanEvent[] = []
    for (const e of events) {
      if (e.kind !== 'failed' && e.kind !== 'warning') continue
      const k = eventKey(e)
      if (now.has(k)) continue
      now.add(k)
      if (!st.level.has(k)) fresh.push(e)
    }
    st.level = now
    for (const e of fresh) {
      if (e.kind === 'failed') this.#log.warn({ service: st.key, reason: e.reason }, e.message)
      await this.#event(svc, e)
    }
  }

  async #event (svc: Svc, e: { type: 'Normal' | 'Warning', reason: string, message: string }): Promise<void> {
    const before = this.#events.failed
    await this.#events.record({
      namespace: svc.metadata?.namespace ?? 'default',
      name: svc.metadata?.name ?? '',
      uid: svc.metadata?.uid,
      resourceVersion: svc.metadata?.resourceVersion,
    }, { type: e.type, reason: e.reason, message: e.message })
    this.#m.writes.inc({ cluster: this.#o.cluster, kind: 'event', outcome: this.#events.failed > before ? 'error' : 'ok' })
  }

  async #serveOne (st: SvcState, plan: ServicePlan, svc: Svc, status: StatusPlan): Promise<void> {
    const stale = new Set<string>()
    let rv = svc.metadata?.resourceVersion
    // The finalizer first: from then on, deleting the Service waits for our
    // cleanup, even while kind-tunnel is down.
    const fins = svc.metadata?.finalizers ?? []
    const want = wantedFinalizers(svc)
    if (want.some((f) => !fins.includes(f)) && !isDeleting(svc)) {
      // Deleted meanwhile? The API refuses new finalizers then (422); the
      // failure is retried, and the next pass sees the deletion and cleans up.
      if (rv !== undefined) stale.add(rv)
      rv = await this.#writer.addFinalizers(svc, want)
    }
    if (status.changed) {
      if (rv !== undefined) stale.add(rv)
      let res: V1Service
      try {
        res = await this.#writer.patchStatus(plan, plan.ingress.length > 0 ? plan.ingress : null)
      } catch (err) {
        // 422 because the Service stopped being a LoadBalancer between our
        // cache and this patch (ingress is forbidden on other types): not a
        // failure, the next pass cleans it up.
        if (statusCodeOf(err) === 422 && await this.#writer.noLongerLoadBalancer(plan)) {
          this.#log.debug({ service: plan.key }, 'status patch raced a type change; cleaning up on the next pass')
          st.staleRvs = stale
          this.#markDirty()
          return
        }
        throw err
      }
      rv = res.metadata?.resourceVersion
      st.statusPatched = true
      const where = plan.ingress.map((i) => i.ip ?? i.hostname).join(', ')
      if (plan.ingress.length > 0) this.#log.info({ service: plan.key, ip: plan.ip, hostnames: plan.hostnames }, `load balancer ready at ${where}`)
      // Assigned / updated / unsupported accompany a status change: now it happened.
      for (const e of status.events) await this.#event(svc, e)
    } else {
      st.statusPatched = true
    }
    // A write that changed nothing keeps its RV: that one is current, not stale.
    if (rv !== undefined) stale.delete(rv)
    st.staleRvs = stale
  }

  async #cleanupOne (st: SvcState, plan: ServicePlan, svc: Svc, status: StatusPlan, ctx: PassContext): Promise<void> {
    // The listeners are gone: this pass's table has none for it.
    await this.#provider.ensureDeleted(plan, ctx.wantIps)
    const stale = new Set<string>()
    let rv = svc.metadata?.resourceVersion
    // Decided before the status goes: the status is part of the evidence.
    const removable = removableFinalizers(svc, this.#owner)
    let removed = false
    if (!isDeleting(svc) && status.changed && statusIsOurs(svc, this.#owner)) {
      // It stopped asking for a load balancer but lives on: take our status back.
      if (rv !== undefined) stale.add(rv)
      const res = await this.#writer.patchStatus(plan, null)
      rv = res.metadata?.resourceVersion ?? rv
      removed = true
    }
    if (removable.length > 0) {
      if (rv !== undefined) stale.add(rv)
      // The RV the status patch left, so the precondition holds.
      const after = await this.#writer.removeFinalizers(rv === undefined ? svc : { ...svc, metadata: { ...svc.metadata, resourceVersion: rv } }, removable)
      if (after !== undefined) stale.delete(after)
      removed = true
      this.#log.info({ service: plan.key, ip: plan.ip }, 'load balancer cleaned up')
    }
    // A type change clears the status on the server before we see it, so the
    // finalizer is what says we had served it.
    if (removed && !isDeleting(svc)) {
      await this.#event(svc, { type: 'Normal', reason: 'DeletedLoadBalancer', message: `load balancer removed${plan.ip !== undefined ? `; released ${plan.ip}` : ''}` })
    }
    st.statusPatched = true
    st.staleRvs = stale
  }

  // ------------------------------------------------------------ public

  snapshot (): ControllerSnapshot {
    const failed = this.#lastFailedListeners
    const informers = this.#inf.all.map((i) => i.health())
    const refused = informers.find((h) => !h.watching && !h.absent && h.lastError?.code === 'KT_ERR_KUBE_FORBIDDEN')?.lastError
    const apiProblem = refused === undefined ? undefined : { code: refused.code, message: refused.message, since: refused.at }
    const services = serviceSnapshots(this.#last, failed, (plan) => {
      const svc = this.#inf.services.get(plan.name, plan.namespace) as Svc | undefined
      return { state: this.#states.get(plan.key), finalizer: svc !== undefined && hasFinalizer(svc) }
    })
    return {
      cluster: this.#o.cluster,
      server: this.#clients.server,
      synced: this.#syncedDone && this.#reconciles > 0,
      version: this.#lastApply?.version ?? 0,
      reconciles: this.#reconciles,
      ...(this.#lastReconcileAt !== undefined ? { lastReconcileAt: new Date(this.#lastReconcileAt).toISOString() } : {}),
      ...(this.#lastReconcileMs !== undefined ? { lastReconcileMs: this.#lastReconcileMs } : {}),
      listeners: {
        count: this.#last?.table.listeners.length ?? 0,
        failed: [...failed].map(([key, f]) => ({ key, code: f.code, message: f.message })),
      },
      services,
      gateways: this.#last?.gateways ?? [],
      gatewayApi: Object.fromEntries(this.#inf.gatewayApi?.served ?? []),
      addresses: this.#provider.bound(),
      informers,
      ...(apiProblem !== undefined ? { apiProblem } : {}),
    }
  }

  async #pause (): Promise<void> {
    this.#paused = true
    if (this.#debounce !== undefined) clearTimeout(this.#debounce)
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer)
    this.#debounce = undefined
    this.#retryTimer = undefined
    if (this.#running !== undefined) await this.#running
  }

  async cleanup (): Promise<void> {
    await this.#pause()
    const failures: KtError[] = []
    const note = (err: unknown, what: string): void => {
      const e = err instanceof KtError ? err : new KtError('KT_ERR_KUBE_API', `${what}: ${err instanceof Error ? err.message : String(err)}`)
      failures.push(e)
      this.#log.error({ code: e.code }, e.message)
    }
    // 1. Statuses and finalizers first: never promise an address that is about to die.
    const services = (this.#inf.services.list() as readonly Svc[]).filter((svc) => isManaged(svc, this.#owner))
    // Counted as one `cleanup` write per Service, not per request.
    const undo = new ServiceWriter(this.#clients)
    await limit(services, this.#concurrency, async (svc) => {
      try {
        await undo.undo(svc, this.#owner)
        this.#m.writes.inc({ cluster: this.#o.cluster, kind: 'cleanup', outcome: 'ok' })
      } catch (err) {
        const ref = refOf(svc)
        note(err, `clean up ${ref.namespace}/${ref.name}`)
      }
    })
    // 2. Stop serving this cluster.
    try {
      const r = await this.#o.sink.apply(this.#o.cluster, { version: ++this.#version, listeners: [] })
      this.#lastApply = r
    } catch (err) {
      note(err, 'close the listeners')
    }
    // 3. Release every address held.
    await this.#provider.releaseAll(note)
    if (failures.length > 0) {
      const first = failures[0] as KtError
      throw new KtError('KT_ERR_CLEANUP', `${failures.length} cleanup step(s) failed; first: ${first.code}: ${first.message}`, { cause: first })
    }
    this.#log.info({ services: services.length }, 'statuses, finalizers and addresses removed')
  }

  async stop (): Promise<void> {
    this.#stopped = true
    await this.#pause()
    await this.#inf.stop()
    this.#settleSynced(new KtError('KT_ERR_KUBE_API', 'the controller was stopped before its first reconcile'))
  }
}

/**
 * Start watching one cluster and keeping its LoadBalancer Services served.
 * Throws at once (InvalidArgumentError) on an unreadable kubeconfig or bad
 * routing options; API failures after that are retried, never thrown.
 */
export async function startController (o: ControllerOptions): Promise<Controller> {
  const kc = loadKubeConfig(o.kubeconfig)
  // Validate the routing options now (they throw InvalidArgumentError), not on the first event.
  validateRoutingOptions(o.routing)
  return new ServiceController(o, makeClients(kc))
}

export interface UndoOptions {
  cluster: string
  kubeconfig: string
  routing: RoutingOptions
  addresses?: Addresses
  logger: Logger
}

/**
 * `kind-tunnel down` without a running controller: list the Services once,
 * clear our statuses and finalizers, and release the pool addresses their
 * statuses name. Returns how many Services were cleaned.
 */
export async function undoCluster (o: UndoOptions): Promise<number> {
  const kc = loadKubeConfig(o.kubeconfig)
  const clients = makeClients(kc)
  const log = o.logger.child({ module: 'control', cluster: o.cluster })
  let list: readonly V1Service[]
  try {
    list = (await clients.core.listServiceForAllNamespaces({}, requestOptions())).items
  } catch (err) {
    throw kubeError(err, { verb: 'list', resource: 'services' })
  }
  const owner = statusOwner(o.routing)
  const services = (list as readonly Svc[]).filter((svc) => isManaged(svc, owner))
  // Which status IPs are ours to release: the pool IP the status of each
  // Service a cleanup covers names (no allocations are remembered here).
  const ips = new Set<string>()
  for (const svc of services) {
    const ip = isHandled(svc) || needsRelease(svc, owner) ? statusPoolIp(svc, owner.pool) : undefined
    if (ip !== undefined) ips.add(ip)
  }
  const writer = new ServiceWriter(clients)
  const failures: KtError[] = []
  for (const svc of services) {
    try {
      await writer.undo(svc, owner)
    } catch (err) {
      failures.push(err instanceof KtError ? err : kubeError(err, { verb: 'patch', resource: 'services' }))
    }
  }
  if (o.addresses !== undefined) {
    for (const ip of ips) {
      try {
        await o.addresses.release(ip)
      } catch (err) {
        failures.push(err instanceof KtError ? err : new KtError('KT_ERR_ADDRESS_COMMAND', String(err)))
      }
    }
  }
  if (failures.length > 0) {
    const first = failures[0] as KtError
    throw new KtError('KT_ERR_CLEANUP', `${failures.length} cleanup step(s) failed; first: ${first.code}: ${first.message}`, { cause: first })
  }
  log.info({ services: services.length }, 'statuses, finalizers and addresses removed')
  return services.length
}
