// computeRoutes: the desired RouteTable, and a plan per Service (the desired
// status entries, the address to bind, what was found wrong), from what the
// controller observed. Pure: no I/O, no clock, no logging. The same observed
// state gives a deep-equal result every time, so the ListenerManager's diff of
// two runs over an unchanged cluster is empty. docs/addressing.md describes
// the rules for users. Whether the status must change, and the Events of that
// change, are the controller's (control/status-plan.ts).
//
// Phases, each a function: selectServices → assignAddresses →
// describeServices → draftListeners / resolveListeners (listeners.ts) → plans.
// Over 500 lines because the Service-selection predicates the controller
// shares (isHandled, finalizers, status ownership) and the Ingress/Gateway
// name intake live next to the phases that use them.

import { InvalidArgumentError } from '../errors.js'
import { canonicalIp, cidrContainsIp, parseCidr, parseIp, type Cidr } from './cidr.js'
import { allocate } from './ipam.js'
import {
  type KubeEndpointSlice, type KubeIngress, type KubeIngressClass, type KubeLoadBalancerIngress,
  type KubeNode, type KubeService, objectKey, olderFirst,
} from './kube.js'
import { type GatewayFinding, type GatewayHostname, type GatewayObjects, type Candidate, computeGatewayNames, findServices } from './gateway.js'
import { draftListeners, resolveListeners, sortListeners } from './listeners.js'
import { normalizeHostname, parseHostnameList } from './names.js'
import { type Finding, type ListenerDraft, PORT_ERROR_NO_NODE_PORT, PORT_ERROR_PROTOCOL, type Work, type WorkPort } from './work.js'
import {
  type BalancePolicy, type Endpoint, type HealthCheckSpec,
  type RouteTable, type ServicePortRef, type UpstreamSpec, endpointKey, listenerKey,
} from './types.js'

/** spec.loadBalancerClass that kind-tunnel serves (besides no class at all). */
export const LOAD_BALANCER_CLASS = 'kind-tunnel.dev/lb'
/** Extra hostnames for a Service, comma-separated (`a.test, *.apps.test`). */
export const ANNOTATION_HOSTNAMES = 'kind-tunnel.dev/hostnames'
/** Ingress classes whose rule hosts this LB Service answers for, comma-separated. */
export const ANNOTATION_INGRESS_CLASS = 'kind-tunnel.dev/ingress-class'
/**
 * Warm idle connections to keep open to each backend of this Service (`"N"`,
 * 0-64). Off by default: a pooled socket is a client the server did not ask
 * for (it breaks iperf3 and greets nobody on SMTP-like servers), so only a
 * Service whose server is fine with that asks for it.
 */
export const ANNOTATION_BACKEND_POOL = 'kind-tunnel.dev/backend-pool'
export const BACKEND_POOL_MAX = 64

/** The annotation's value: a whole number 0..BACKEND_POOL_MAX, else an error text. */
export function parseBackendPool (raw: string | undefined): number | undefined | { error: string } {
  if (raw === undefined) return undefined
  const s = raw.trim()
  if (!/^\d{1,3}$/.test(s) || Number(s) > BACKEND_POOL_MAX) return { error: `${ANNOTATION_BACKEND_POOL}: ${JSON.stringify(raw)} is not a whole number 0-${BACKEND_POOL_MAX}; no backend pool` }
  return Number(s)
}
/**
 * The upstream service controller's finalizer (issue #5), the one
 * cloud-provider-kind and every cloud provider put on the LoadBalancer
 * Services they serve: tools that wait for it (and users who know it) keep
 * working. Running kind-tunnel and cloud-provider-kind on one cluster is
 * unsupported either way: both would claim every class-less Service.
 */
export const FINALIZER = 'service.kubernetes.io/load-balancer-cleanup'
/**
 * kind-tunnel's own finalizer, on every Service it serves. The shared
 * FINALIZER goes only on class-less ones (upstream's service controller never
 * finalizes a classed Service), and kind-tunnel removes the shared one only
 * where it wrote the status: its own finalizer is there, or the status names
 * an address it gives out. cloud-provider-kind, when it runs too, removes the
 * shared finalizer from any Service being deleted; this one still holds the
 * delete until kind-tunnel has cleaned up.
 */
export const OWN_FINALIZER = 'kind-tunnel.dev/load-balancer-cleanup'
/** Nodes with this label (any value) are not LB backends, as upstream's service controller. */
export const EXCLUDE_LABEL = 'node.kubernetes.io/exclude-from-external-load-balancers'
/** kube-proxy's health endpoint, for externalTrafficPolicy: Cluster. */
export const KUBE_PROXY_HEALTH_PORT = 10256
/** A /16 in 127/8: answers without an alias on Linux and Windows, far from 127.0.0.1. */
export const DEFAULT_IP_POOL = '127.240.0.0/16'
/** Used when spec.loadBalancerSourceRanges is empty, as Kubernetes does. */
const LEGACY_SOURCE_RANGES = 'service.beta.kubernetes.io/load-balancer-source-ranges'
const INGRESS_CLASS_ANNOTATION = 'kubernetes.io/ingress.class'
const DEFAULT_CLASS_ANNOTATION = 'ingressclass.kubernetes.io/is-default-class'
const SERVICE_NAME_LABEL = 'kubernetes.io/service-name'

export { PORT_ERROR_NO_NODE_PORT, PORT_ERROR_PROTOCOL, PORT_ERROR_SHADOWED, type Finding } from './work.js'

export type AddressingMode = 'ip' | 'hostname' | 'both'

export interface ObservedState {
  /** Cluster name; the first part of every upstream id. */
  readonly cluster: string
  readonly services: readonly KubeService[]
  readonly nodes: readonly KubeNode[]
  /** When given, plans report ready endpoints per Service. */
  readonly endpointSlices?: readonly KubeEndpointSlice[]
  readonly ingresses?: readonly KubeIngress[]
  readonly ingressClasses?: readonly KubeIngressClass[]
  /** Gateway API objects (hostname mode), when their CRDs are served. */
  readonly gatewayApi?: GatewayObjects
  /** The previous result's `allocations`, fed back so IPs stay put. */
  readonly allocations?: ReadonlyMap<string, string>
}

export interface RoutingOptions {
  /** Default `hostname`. */
  readonly mode?: AddressingMode
  /** Pool for ip mode; default DEFAULT_IP_POOL. */
  readonly ipPool?: string
  /** Address of the shared hostname-mode listeners; default 127.0.0.1. */
  readonly listenHost?: string
  /** Default 8080. */
  readonly httpPort?: number
  /** Default 8443. */
  readonly httpsPort?: number
  /** Default `localhost`: `<service>.<namespace>.localhost`. */
  readonly hostnameSuffix?: string
  /** Policy unless sessionAffinity: ClientIP; default round-robin. */
  readonly defaultPolicy?: BalancePolicy
  /** Copied into every UpstreamSpec, e.g. `relay:<cluster>`. */
  readonly dialer?: string
  /** Copied into every UpstreamSpec. */
  readonly poolSize?: number
  /** RouteTable.version; the caller numbers tables. Default 0. */
  readonly version?: number
  /**
   * kind labels its control-plane nodes with EXCLUDE_LABEL, so a one-node
   * cluster would have no backend at all. When every Ready node is excluded
   * only by that label, use them anyway (default true) and say so in the plan.
   */
  readonly excludedNodeFallback?: boolean
}

export type PlanAction = 'serve' | 'cleanup' | 'failed'

export interface PortPlan {
  readonly port: number
  readonly name?: string
  readonly protocol: string
  readonly nodePort?: number
  readonly status: 'served' | 'unsupported'
  /** The PortStatus.error written to status for this port. */
  readonly error?: string
  readonly message?: string
  /** Upstream id, when served. */
  readonly upstream?: string
  /** Keys (`host:port`) of the listeners that reach this port. */
  readonly listeners: readonly string[]
}

export interface LoadBalancerIngress {
  readonly ip?: string
  readonly hostname?: string
  readonly ipMode?: 'Proxy'
  readonly ports?: ReadonlyArray<{ readonly port: number, readonly protocol: string, readonly error?: string }>
}

export interface ServicePlan {
  /** `namespace/name`. */
  readonly key: string
  readonly namespace: string
  readonly name: string
  readonly action: PlanAction
  /** Why the Service is not (fully) served: CamelCase, with a message. */
  readonly reason?: string
  readonly message?: string
  /** The allocated address (ip mode); for cleanup, the address to release. */
  readonly ip?: string
  /** `<service>.<namespace>.<suffix>` (hostname mode). */
  readonly hostname?: string
  /** Every name the Service answers for (after conflicts), sorted. */
  readonly hostnames: readonly string[]
  readonly ports: readonly PortPlan[]
  /** Node names used as backends, sorted. */
  readonly nodes: readonly string[]
  /** True when the nodes are label-excluded ones used for lack of any other. */
  readonly excludedNodesUsed?: boolean
  /** Ready endpoints from EndpointSlices, when they were observed. */
  readonly readyEndpoints?: number
  /** Desired status.loadBalancer.ingress (control/status-plan.ts compares it with the current one and plans the Events of a change). */
  readonly ingress: readonly LoadBalancerIngress[]
  /** What computing the plan found: warnings and failures (level-triggered). */
  readonly findings: readonly Finding[]
}

/** A Gateway hostname after conflicts: whether it is routed, and where to reach it. */
export interface GatewayHostnamePlan extends GatewayHostname {
  /** Routed to the Gateway's Service (false: another Service or Gateway holds it). */
  readonly served: boolean
  /** `http://name:8080/` or `https://name:8443/`; absent for wildcards. */
  readonly url?: string
}

export interface GatewayPlan extends Omit<GatewayFinding, 'hostnames'> {
  readonly hostnames: readonly GatewayHostnamePlan[]
}

export interface ComputeResult {
  readonly table: RouteTable
  readonly services: ServicePlan[]
  /** Gateways seen (hostname mode with Gateway API objects), sorted by key. */
  readonly gateways: GatewayPlan[]
  /** `namespace/name` → IP, to feed back as ObservedState.allocations. */
  readonly allocations: Map<string, string>
}

interface Resolved {
  mode: AddressingMode
  pool: Cidr
  listenHost: string
  httpPort: number
  httpsPort: number
  suffix: string
  defaultPolicy: BalancePolicy
  dialer: string | undefined
  poolSize: number | undefined
  version: number
  excludedNodeFallback: boolean
}

function resolveOptions (opts: RoutingOptions): Resolved {
  const mode = opts.mode ?? 'hostname'
  if (mode !== 'ip' && mode !== 'hostname' && mode !== 'both') {
    throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `--address: ${JSON.stringify(mode)} is not ip, hostname or both`)
  }
  const port = (v: number | undefined, d: number, what: string): number => {
    const p = v ?? d
    if (!Number.isInteger(p) || p < 1 || p > 65535) throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `${what}: ${p} is out of range 1-65535`)
    return p
  }
  const listenRaw = opts.listenHost ?? '127.0.0.1'
  const listenHost = canonicalIp(listenRaw)
  const parsedListen = parseIp(listenRaw)
  if (listenHost === null || parsedListen === null) {
    throw new InvalidArgumentError('KT_ERR_INVALID_ADDRESS', `listen host: ${JSON.stringify(listenRaw)} is not an IP address`)
  }
  if (parsedListen.value === 0n) {
    throw new InvalidArgumentError('KT_ERR_WILDCARD_BIND', `listen host: refusing wildcard address ${listenRaw}`)
  }
  const suffix = normalizeHostname(opts.hostnameSuffix ?? 'localhost')
  if (suffix === null || suffix.startsWith('*.')) {
    throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `hostname suffix: ${JSON.stringify(opts.hostnameSuffix)} is not a DNS name`)
  }
  return {
    mode,
    pool: parseCidr(opts.ipPool ?? DEFAULT_IP_POOL, { strict: true, what: '--ip-pool' }),
    listenHost,
    httpPort: port(opts.httpPort, 8080, '--http-port'),
    httpsPort: port(opts.httpsPort, 8443, '--https-port'),
    suffix,
    defaultPolicy: opts.defaultPolicy ?? 'round-robin',
    dialer: opts.dialer,
    poolSize: opts.poolSize,
    version: opts.version ?? 0,
    excludedNodeFallback: opts.excludedNodeFallback ?? true,
  }
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

// ---------------------------------------------------------------- selection

/** Whether kind-tunnel should serve this Service at all. */
export function isHandled (svc: KubeService): boolean {
  if (svc.spec?.type !== 'LoadBalancer') return false
  const cls = svc.spec.loadBalancerClass
  return cls === undefined || cls === null || cls === '' || cls === LOAD_BALANCER_CLASS
}

/** What kind-tunnel hands out: IPs in its pool, `<name>.<namespace>.<suffix>` hostnames. */
export interface StatusOwner { readonly pool: Cidr, readonly suffix: string }

/** Check the routing options (throws InvalidArgumentError), as computeRoutes would on its first pass. */
export function validateRoutingOptions (opts: RoutingOptions): void {
  resolveOptions(opts)
}

export function statusOwner (opts: RoutingOptions): StatusOwner {
  const o = resolveOptions(opts)
  return { pool: o.pool, suffix: o.suffix }
}

function entryIsOurs (e: KubeLoadBalancerIngress, owner: StatusOwner): boolean {
  if (e.ip !== undefined && e.ip !== '') return cidrContainsIp(owner.pool, e.ip)
  if (e.hostname !== undefined && e.hostname !== '') return normalizeHostname(e.hostname)?.endsWith(`.${owner.suffix}`) === true
  return true
}

/** The status names an address that kind-tunnel did not give out (another controller wrote it). */
export function statusIsForeign (svc: KubeService, owner: StatusOwner): boolean {
  return (svc.status?.loadBalancer?.ingress ?? []).some((e) => !entryIsOurs(e, owner))
}

/** The status is not empty and names only kind-tunnel's addresses. */
export function statusIsOurs (svc: KubeService, owner: StatusOwner): boolean {
  const ing = svc.status?.loadBalancer?.ingress ?? []
  return ing.length > 0 && ing.every((e) => entryIsOurs(e, owner))
}

/** Finalizers kind-tunnel puts on a Service it serves. */
export function wantedFinalizers (svc: KubeService): string[] {
  const cls = svc.spec?.loadBalancerClass
  return cls === undefined || cls === null || cls === '' ? [FINALIZER, OWN_FINALIZER] : [OWN_FINALIZER]
}

/** Finalizers kind-tunnel may take off: its own; the shared one only where it wrote the status. */
export function removableFinalizers (svc: KubeService, owner: StatusOwner): string[] {
  const fins = svc.metadata?.finalizers ?? []
  const own = fins.includes(OWN_FINALIZER)
  const out: string[] = own ? [OWN_FINALIZER] : []
  if (fins.includes(FINALIZER) && (own || statusIsOurs(svc, owner))) out.push(FINALIZER)
  return out
}

/**
 * A Service that stopped asking for kind-tunnel but still carries a
 * finalizer kind-tunnel may remove: it is cleaned up. The shared finalizer
 * alone, on a Service of another class whose status kind-tunnel did not
 * write, belongs to another controller.
 */
export function needsRelease (svc: KubeService, owner: StatusOwner): boolean {
  return removableFinalizers(svc, owner).length > 0 && !(hasForeignClass(svc) && !(svc.metadata?.finalizers ?? []).includes(OWN_FINALIZER))
}

/** The pool IP a Service's status names (canonical), if any: what its cleanup releases when no allocation is remembered. */
export function statusPoolIp (svc: KubeService, pool: Cidr): string | undefined {
  const fromStatus = (svc.status?.loadBalancer?.ingress ?? []).map((i) => i.ip).find((ip) => ip !== undefined && cidrContainsIp(pool, ip))
  return fromStatus !== undefined ? canonicalIp(fromStatus) ?? undefined : undefined
}

function hasForeignClass (svc: KubeService): boolean {
  const cls = svc.spec?.loadBalancerClass
  return cls !== undefined && cls !== null && cls !== '' && cls !== LOAD_BALANCER_CLASS
}

function isDeleting (o: { readonly metadata?: { readonly deletionTimestamp?: string | Date } }): boolean {
  const t = o.metadata?.deletionTimestamp
  return t !== undefined && t !== null && t !== ''
}

// ---------------------------------------------------------------- nodes

interface NodeBackend { name: string, v4?: string, v6?: string }

interface NodeSelection { nodes: NodeBackend[], excludedNodesUsed: boolean }

function nodeBackend (n: KubeNode): NodeBackend | null {
  const name = n.metadata?.name
  if (name === undefined || name === '') return null
  const out: NodeBackend = { name }
  for (const a of n.status?.addresses ?? []) {
    if (a.type !== 'InternalIP' || typeof a.address !== 'string') continue
    const p = parseIp(a.address)
    if (p === null) continue
    const text = canonicalIp(a.address) ?? a.address
    if (p.family === 4 && out.v4 === undefined) out.v4 = text
    if (p.family === 6 && out.v6 === undefined) out.v6 = text
  }
  return out.v4 === undefined && out.v6 === undefined ? null : out
}

function selectNodes (nodes: readonly KubeNode[], fallback: boolean): NodeSelection {
  const eligible: NodeBackend[] = []
  const labelExcluded: NodeBackend[] = []
  for (const n of nodes) {
    if (isDeleting(n)) continue
    const ready = (n.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True')
    if (!ready) continue
    const b = nodeBackend(n)
    if (b === null) continue
    if (n.metadata?.labels?.[EXCLUDE_LABEL] !== undefined) labelExcluded.push(b)
    else eligible.push(b)
  }
  const byName = (a: NodeBackend, b: NodeBackend): number => cmp(a.name, b.name)
  if (eligible.length === 0 && fallback && labelExcluded.length > 0) {
    return { nodes: labelExcluded.sort(byName), excludedNodesUsed: true }
  }
  return { nodes: eligible.sort(byName), excludedNodesUsed: false }
}

/**
 * Which node address family reaches the NodePort. A single-stack Service has
 * NodePorts on its own family only; otherwise IPv4 first (the host is far
 * likelier to route IPv4 to the kind network), then IPv6.
 */
function familyOrder (svc: KubeService): Array<4 | 6> {
  const fams = svc.spec?.ipFamilies ?? []
  const primary: 4 | 6 = fams[0] === 'IPv6' ? 6 : 4
  if (fams.length === 1 || svc.spec?.ipFamilyPolicy === 'SingleStack') return [primary]
  return [4, 6]
}

// ---------------------------------------------------------------- ingress hosts

function ingressClassOf (ing: KubeIngress, defaultClass: string | undefined): string | undefined {
  return ing.spec?.ingressClassName ?? ing.metadata?.annotations?.[INGRESS_CLASS_ANNOTATION] ?? defaultClass
}

/**
 * The Ingress classes a LB Service fronts. Explicit: the annotation
 * `kind-tunnel.dev/ingress-class`. Otherwise, by the labels Helm charts put on
 * both the controller's Service and its IngressClass (ingress-nginx, Traefik):
 * the Service has `app.kubernetes.io/component=controller`, and the
 * IngressClass has the same `app.kubernetes.io/name` (and the same
 * `app.kubernetes.io/instance` when it carries one).
 */
function frontedClasses (svc: KubeService, classes: readonly KubeIngressClass[]): string[] {
  const ann = svc.metadata?.annotations?.[ANNOTATION_INGRESS_CLASS]
  if (ann !== undefined) {
    return ann.split(',').map((c) => c.trim()).filter((c) => c !== '').sort(cmp)
  }
  const labels = svc.metadata?.labels ?? {}
  if (labels['app.kubernetes.io/component'] !== 'controller') return []
  const out: string[] = []
  for (const ic of classes) {
    const l = ic.metadata?.labels ?? {}
    const name = ic.metadata?.name
    if (name === undefined || l['app.kubernetes.io/name'] === undefined) continue
    if (l['app.kubernetes.io/name'] !== labels['app.kubernetes.io/name']) continue
    const inst = l['app.kubernetes.io/instance']
    if (inst !== undefined && inst !== labels['app.kubernetes.io/instance']) continue
    out.push(name)
  }
  return out.sort(cmp)
}

function defaultIngressClass (classes: readonly KubeIngressClass[]): string | undefined {
  // Kubernetes refuses class-less Ingresses when several classes claim the
  // default, so only a single default counts.
  const defs = classes.filter((c) => c.metadata?.annotations?.[DEFAULT_CLASS_ANNOTATION] === 'true' && c.metadata.name !== undefined)
  return defs.length === 1 ? defs[0]?.metadata?.name : undefined
}

// ---------------------------------------------------------------- status

// ---------------------------------------------------------------- main

/** The structured reference of a Service port, with its creation time for conflicts between clusters. */
function serviceRef (cluster: string, w: Work, port: number): ServicePortRef {
  const t = w.svc.metadata?.creationTimestamp
  const created = t instanceof Date ? t.toISOString() : t
  return { cluster, namespace: w.namespace, name: w.name, port, ...(created !== undefined ? { created } : {}) }
}

export function computeRoutes (observed: ObservedState, opts: RoutingOptions = {}): ComputeResult {
  const o = resolveOptions(opts)
  const useIp = o.mode !== 'hostname'
  const useNames = o.mode !== 'ip'
  const selection = selectNodes(observed.nodes, o.excludedNodeFallback)
  const previous = observed.allocations ?? new Map<string, string>()

  // --- which Services to serve, and which to clean up.
  const { plans, work } = selectServices(observed.services, { pool: o.pool, suffix: o.suffix }, previous)
  // --- addresses (ip mode): every handled Service keeps its IP, even when it failed below.
  const allocations = useIp ? assignAddresses(work, o, previous, !useNames) : new Map<string, string>()
  // --- Ingress hosts and Gateway names: which Service serves each (gateway.ts).
  const classes = observed.ingressClasses ?? []
  const fronted = useNames ? frontNames(observed, work, classes, defaultIngressClass(classes), o.suffix) : undefined
  // --- per Service: source ranges, ports, upstreams, names.
  describeServices(work, observed.cluster, o, selection, fronted)
  const slicesByService = indexSlices(observed.endpointSlices)

  // --- listeners: each served port claims a listener, then names are settled per listener.
  const drafts = draftListeners(work, { useIp, useNames, listenHost: o.listenHost, httpPort: o.httpPort, httpsPort: o.httpsPort })
  const listeners = sortListeners(resolveListeners(drafts, o.listenHost))

  // --- plans.
  for (const w of work) plans.push(servePlan(w, selection, slicesByService, useIp, useNames))
  plans.sort((a, b) => cmp(a.key, b.key))

  const gateways = fronted === undefined ? [] : gatewayPlans(fronted.gateways.gateways, drafts, o)
  return { table: { version: o.version, listeners }, services: plans, gateways, allocations }
}

/** Phase 1: the handled Services (to serve, oldest first) and the cleanup plans of the ones kind-tunnel lets go. */
function selectServices (services: readonly KubeService[], owner: StatusOwner, previous: ReadonlyMap<string, string>): { plans: ServicePlan[], work: Work[] } {
  const plans: ServicePlan[] = []
  const work: Work[] = []
  const seen = new Set<string>()
  for (const svc of [...services].sort(olderFirst)) {
    const name = svc.metadata?.name
    if (name === undefined || name === '') continue
    const key = objectKey(svc)
    if (seen.has(key)) continue
    seen.add(key)
    const namespace = svc.metadata?.namespace ?? 'default'
    const handled = isHandled(svc)
    // A Service that stopped asking for us (its type changed: the API server
    // then dropped its class and cleared its status) but still carries a
    // finalizer of ours, or a handled one being deleted: release it. The
    // shared finalizer alone, on a Service whose status kind-tunnel did not
    // write, belongs to another controller and is never touched.
    if (!handled) {
      if (needsRelease(svc, owner)) {
        plans.push(cleanupPlan(svc, key, namespace, name, previous, owner.pool))
      }
      continue
    }
    if (isDeleting(svc)) {
      plans.push(cleanupPlan(svc, key, namespace, name, previous, owner.pool))
      continue
    }
    work.push({ svc, key, namespace, name, findings: [], ports: [], names: [], wonNames: new Set(), gatewayPorts: [] })
  }
  return { plans, work }
}

/** Phase 2 (ip mode): an IP per handled Service from the pool, stable across passes. Returns the allocations. */
function assignAddresses (work: readonly Work[], o: Resolved, previous: ReadonlyMap<string, string>, failWithoutIp: boolean): Map<string, string> {
  const reserved = [o.listenHost]
  const res = allocate(work.map((w) => w.svc), o.pool, previous, { reserved })
  const allocations = res.allocations
  const byKey = new Map(work.map((w) => [w.key, w]))
  for (const warn of res.warnings) {
    byKey.get(warn.key)?.findings.push({ kind: 'warning', reason: 'RequestedIPUnavailable', message: warn.message })
  }
  for (const f of res.failures) {
    const w = byKey.get(f.key)
    if (w === undefined) continue
    const message = `${f.code}: ${f.message}`
    w.findings.push({ kind: 'failed', reason: 'IPPoolExhausted', message })
    if (failWithoutIp) w.failed = { reason: 'IPPoolExhausted', message }
  }
  for (const w of work) {
    const ip = allocations.get(w.key)
    if (ip !== undefined) w.ip = ip
  }
  return allocations
}

/** Phase 3: per Service, its source ranges, ports and upstreams, and (hostname mode) the names it asks for. */
function describeServices (work: readonly Work[], cluster: string, o: Resolved, selection: NodeSelection, fronted: ReturnType<typeof frontNames> | undefined): void {
  for (const w of work) {
    const spec = w.svc.spec ?? {}
    let rawRanges: readonly string[] = spec.loadBalancerSourceRanges ?? []
    if (rawRanges.length === 0) {
      const legacy = w.svc.metadata?.annotations?.[LEGACY_SOURCE_RANGES]
      if (legacy !== undefined) rawRanges = legacy.split(',').map((s) => s.trim()).filter((s) => s !== '')
    }
    const ranges = new Set<string>()
    for (const r of rawRanges) {
      try {
        ranges.add(parseCidr(r, { what: 'loadBalancerSourceRanges' }).text)
      } catch {
        // A range we cannot read must not widen access to everyone.
        const message = `loadBalancerSourceRanges: ${JSON.stringify(r)} is not a CIDR; not serving this Service until it is fixed`
        w.failed = { reason: 'InvalidSourceRange', message }
        w.findings.push({ kind: 'failed', reason: 'InvalidSourceRange', message })
        break
      }
    }
    if (ranges.size > 0) w.sourceRanges = [...ranges].sort(cmp)

    const affinity = spec.sessionAffinity === 'ClientIP'
    const policy: BalancePolicy = affinity ? 'client-ip-hash' : o.defaultPolicy
    let health: HealthCheckSpec = { kind: 'http', port: KUBE_PROXY_HEALTH_PORT, path: '/healthz' }
    if (spec.externalTrafficPolicy === 'Local' && typeof spec.healthCheckNodePort === 'number' && spec.healthCheckNodePort > 0) {
      health = { kind: 'http', port: spec.healthCheckNodePort, path: '/healthz' }
    }
    const families = familyOrder(w.svc)
    const pool = parseBackendPool(w.svc.metadata?.annotations?.[ANNOTATION_BACKEND_POOL])
    if (typeof pool === 'object') w.findings.push({ kind: 'warning', reason: 'InvalidBackendPool', message: pool.error })
    const poolSize = typeof pool === 'number' ? pool : o.poolSize
    const endpointsFor = (nodePort: number): Endpoint[] => {
      const eps: Endpoint[] = []
      for (const n of selection.nodes) {
        for (const f of families) {
          const host = f === 4 ? n.v4 : n.v6
          if (host !== undefined) { eps.push({ host, port: nodePort }); break }
        }
      }
      return eps.sort((a, b) => cmp(endpointKey(a), endpointKey(b)))
    }

    for (const p of spec.ports ?? []) {
      if (typeof p.port !== 'number') continue
      const protocol = p.protocol ?? 'TCP'
      const wp: WorkPort = { spec: p, port: p.port, protocol, listeners: [] }
      if (typeof p.nodePort === 'number' && p.nodePort > 0) wp.nodePort = p.nodePort
      if (protocol !== 'TCP' && protocol !== 'UDP') {
        wp.error = PORT_ERROR_PROTOCOL
        wp.message = `port ${p.port}/${protocol}: only TCP and UDP are proxied`
      } else if (wp.nodePort === undefined) {
        wp.error = PORT_ERROR_NO_NODE_PORT
        wp.message = `port ${p.port}/${protocol} has no nodePort (allocateLoadBalancerNodePorts: false); nodes cannot be reached`
      } else if (protocol === 'UDP') {
        wp.upstream = { ...udpUpstream(`${cluster}/${w.namespace}/${w.name}:${p.port}`, endpointsFor(wp.nodePort), policy, health, o.dialer), service: serviceRef(cluster, w, p.port) }
      } else {
        const upstream: UpstreamSpec = {
          id: `${cluster}/${w.namespace}/${w.name}:${p.port}`,
          service: serviceRef(cluster, w, p.port),
          endpoints: endpointsFor(wp.nodePort),
          policy,
          health,
          ...(poolSize !== undefined ? { poolSize } : {}),
          ...(o.dialer !== undefined ? { dialer: o.dialer } : {}),
        }
        wp.upstream = upstream
      }
      w.ports.push(wp)
    }

    if (fronted !== undefined) {
      w.hostname = `${w.name}.${w.namespace}.${o.suffix}`
      const names = [w.hostname]
      const extra = parseHostnameList(w.svc.metadata?.annotations?.[ANNOTATION_HOSTNAMES])
      for (const bad of extra.invalid) {
        w.findings.push({ kind: 'warning', reason: 'InvalidHostname', message: `${ANNOTATION_HOSTNAMES}: ${JSON.stringify(bad)} is not a hostname or *.suffix; ignored` })
      }
      names.push(...extra.names)
      for (const ing of fronted?.ingresses.get(w.key) ?? []) {
        for (const rule of ing.spec?.rules ?? []) {
          if (rule.host === undefined || rule.host === '') continue
          const n = normalizeHostname(rule.host)
          if (n === null) {
            w.findings.push({ kind: 'warning', reason: 'InvalidHostname', message: `Ingress ${objectKey(ing)}: host ${JSON.stringify(rule.host)} is not a hostname; ignored` })
          } else {
            names.push(n)
          }
        }
      }
      w.names = [...new Set(names)]
      w.gatewayPorts = (fronted?.gateways.byService.get(w.key) ?? []).map((g) => ({ port: g.servicePort, scheme: g.scheme, names: g.names }))
    }
  }
}

/** Which Ingresses each Service answers for, and the Gateways' names (gateway.ts has the order). */
function frontNames (observed: ObservedState, work: readonly Work[], classes: readonly KubeIngressClass[], defaultClass: string | undefined, suffix: string): { ingresses: Map<string, KubeIngress[]>, gateways: ReturnType<typeof computeGatewayNames> } {
  const candidates: Candidate[] = work.filter((w) => w.failed === undefined).map((w) => {
    const ann = w.svc.metadata?.annotations?.[ANNOTATION_INGRESS_CLASS]
    return {
      key: w.key,
      svc: w.svc,
      ip: w.ip,
      hostname: `${w.name}.${w.namespace}.${suffix}`,
      explicitClasses: ann === undefined ? undefined : ann.split(',').map((c) => c.trim()).filter((c) => c !== ''),
    }
  })
  const ingresses = new Map<string, KubeIngress[]>()
  for (const ing of [...(observed.ingresses ?? [])].sort(olderFirst)) {
    if (isDeleting(ing)) continue
    const cls = ingressClassOf(ing, defaultClass)
    const addresses: string[] = []
    for (const i of ing.status?.loadBalancer?.ingress ?? []) {
      const a = canonicalIp(i.ip ?? '') ?? i.hostname?.toLowerCase()
      if (a !== undefined && a !== '') addresses.push(a)
    }
    const found = findServices(candidates, cls, addresses, (c) => cls !== undefined && frontedClasses(c.svc, classes).includes(cls))
    for (const k of found.keys) {
      let arr = ingresses.get(k)
      if (arr === undefined) ingresses.set(k, arr = [])
      arr.push(ing)
    }
  }
  return { ingresses, gateways: computeGatewayNames(observed.gatewayApi ?? {}, candidates) }
}

function gatewayPlans (found: readonly GatewayFinding[], drafts: ReadonlyMap<string, ListenerDraft>, o: Resolved): GatewayPlan[] {
  // What each Service port won on the shared ports: `port Service-key:service-port` → names.
  const won = new Map<string, Set<string>>()
  for (const port of [o.httpPort, o.httpsPort]) {
    for (const c of drafts.get(listenerKey({ host: o.listenHost, port }))?.claims ?? []) {
      won.set(`${port} ${c.work.key}:${c.servicePort}`, c.won)
    }
  }
  return found.map((g) => ({
    ...g,
    hostnames: g.hostnames.map((h) => {
      const port = h.scheme === 'http' ? o.httpPort : o.httpsPort
      const served = g.services.some((k) => won.get(`${port} ${k}:${h.servicePort}`)?.has(h.name) === true)
      return { ...h, served, ...(h.name.startsWith('*.') ? {} : { url: `${h.scheme}://${h.name}:${port}/` }) }
    }),
  }))
}

// --- UDP ports (issue #16): a UDP listener per port, never shared by name
// (a datagram carries no SNI or Host), on the Service's IP and, in hostname
// mode, on the listen host at the same port number.

function udpUpstream (id: string, endpoints: Endpoint[], policy: BalancePolicy, health: HealthCheckSpec, dialer: string | undefined): UpstreamSpec {
  // Health is the node's (kube-proxy /healthz, or the healthCheckNodePort
  // under ETP Local): a UDP port has nothing to connect to. No warm sockets.
  return { id: `${id}/udp`, endpoints, policy, health, poolSize: 0, ...(dialer !== undefined ? { dialer } : {}) }
}

function indexSlices (slices: readonly KubeEndpointSlice[] | undefined): Map<string, number> | undefined {
  if (slices === undefined) return undefined
  // Per Service and address family: a dual-stack Service has one slice (or
  // more) per family, each listing the same pods, so the families are not
  // added up; the Service has as many ready endpoints as its fullest family.
  const perFamily = new Map<string, Map<string, number>>()
  for (const s of slices) {
    const svcName = s.metadata?.labels?.[SERVICE_NAME_LABEL]
    if (svcName === undefined) continue
    const key = `${s.metadata?.namespace ?? 'default'}/${svcName}`
    // EndpointConditions.ready: "nil should be interpreted as true".
    const ready = (s.endpoints ?? []).filter((e) => e.conditions?.ready !== false).length
    let fams = perFamily.get(key)
    if (fams === undefined) perFamily.set(key, fams = new Map())
    const fam = s.addressType ?? 'IPv4'
    fams.set(fam, (fams.get(fam) ?? 0) + ready)
  }
  const m = new Map<string, number>()
  for (const [key, fams] of perFamily) m.set(key, Math.max(...fams.values()))
  return m
}

function cleanupPlan (svc: KubeService, key: string, namespace: string, name: string, previous: ReadonlyMap<string, string>, pool: Cidr): ServicePlan {
  const ip = previous.get(key) ?? statusPoolIp(svc, pool)
  return {
    key,
    namespace,
    name,
    action: 'cleanup',
    reason: isDeleting(svc) ? 'Deleting' : 'NotHandled',
    message: isDeleting(svc) ? 'the Service is being deleted' : 'the Service no longer asks kind-tunnel for a load balancer',
    ...(ip !== undefined ? { ip } : {}),
    hostnames: [],
    ports: [],
    nodes: [],
    ingress: [],
    findings: [],
  }
}

function servePlan (w: Work, sel: NodeSelection, slices: Map<string, number> | undefined, useIp: boolean, useNames: boolean): ServicePlan {
  const findings = [...w.findings]
  const ports: PortPlan[] = w.ports.map((p) => ({
    port: p.port,
    ...(p.spec.name !== undefined && p.spec.name !== '' ? { name: p.spec.name } : {}),
    protocol: p.protocol,
    ...(p.nodePort !== undefined ? { nodePort: p.nodePort } : {}),
    status: p.error === undefined && w.failed === undefined ? 'served' : 'unsupported',
    ...(p.error !== undefined ? { error: p.error } : {}),
    ...(p.message !== undefined ? { message: p.message } : {}),
    ...(p.upstream !== undefined && p.error === undefined && w.failed === undefined ? { upstream: p.upstream.id } : {}),
    listeners: [...p.listeners].sort(cmp),
  }))
  const portStatus = w.ports.map((p) => ({ port: p.port, protocol: p.protocol, ...(p.error !== undefined ? { error: p.error } : {}) }))
  const withPorts = portStatus.length > 0 ? { ports: portStatus } : {}

  const ingress: LoadBalancerIngress[] = []
  if (w.failed === undefined) {
    if (useIp && w.ip !== undefined) ingress.push({ ip: w.ip, ipMode: 'Proxy', ...withPorts })
    if (useNames && w.hostname !== undefined) ingress.push({ hostname: w.hostname, ...withPorts })
  }
  const hasServed = ports.some((p) => p.status === 'served')
  if (w.failed === undefined && hasServed && sel.nodes.length === 0) {
    findings.push({ kind: 'warning', reason: 'NoReadyNodes', message: 'no Ready node can be a backend; connections will be refused' })
  }
  const readyEndpoints = slices?.get(w.key)
  return {
    key: w.key,
    namespace: w.namespace,
    name: w.name,
    action: w.failed === undefined ? 'serve' : 'failed',
    ...(w.failed !== undefined ? { reason: w.failed.reason, message: w.failed.message } : {}),
    ...(w.ip !== undefined ? { ip: w.ip } : {}),
    ...(w.hostname !== undefined ? { hostname: w.hostname } : {}),
    hostnames: [...w.wonNames].sort(cmp),
    ports,
    nodes: w.failed === undefined ? sel.nodes.map((n) => n.name) : [],
    ...(sel.excludedNodesUsed && w.failed === undefined ? { excludedNodesUsed: true } : {}),
    ...(slices !== undefined ? { readyEndpoints: readyEndpoints ?? 0 } : {}),
    ingress,
    findings,
  }
}
