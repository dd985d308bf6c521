// Gateway API and Ingress hostnames, found by address (issue #17). Pure: no
// I/O, no clock, no logging; computeRoutes calls it once per pass.
//
// Which LoadBalancer Service serves a Gateway or an Ingress, in this order
// (docs/gateway.md, "How kind-tunnel finds the Service"):
//  1. explicit: a Service annotated `kind-tunnel.dev/ingress-class` with the
//     Ingress's class or the Gateway's gatewayClassName;
//  2. by address: the Gateway's `status.addresses[].value`, or the Ingress's
//     `status.loadBalancer.ingress[].ip`/`.hostname`, is an address
//     kind-tunnel gave a Service (its IP, or `<service>.<namespace>.<suffix>`);
//  3. by labels: the Helm labels shared by an ingress controller's Service and
//     its IngressClass; for Gateways, the labels implementations put on the
//     Service they create for a Gateway (the standard
//     `gateway.networking.k8s.io/gateway-name`, Envoy Gateway's, Istio's,
//     Cilium's).
// The first step that finds any Service decides.
//
// A Gateway's names are, per listener, the intersection of the listener's
// hostname with each attached route's spec.hostnames, after Gateway API's
// rules: parentRefs (sectionName, port), allowedRoutes (namespaces From
// Same/All/Selector, kinds) and the listener's protocol. HTTP listeners give
// Host routes on the shared HTTP port; HTTPS and TLS listeners give SNI
// routes on the shared HTTPS port; both to the Service port numbered like
// the listener.

import { canonicalIp } from './cidr.js'
import { normalizeHostname } from './names.js'
import type { KubeObjectMeta, KubeService, KubeServicePort } from './kube.js'
import { objectKey, olderFirst } from './kube.js'

export const GATEWAY_GROUP = 'gateway.networking.k8s.io'

/** Labels implementations put on the Service of a Gateway: `name` = the Gateway's name, in the Gateway's namespace unless `namespaceLabel` says. */
export const GATEWAY_SERVICE_LABELS: ReadonlyArray<{ readonly name: string, readonly namespaceLabel?: string }> = [
  { name: 'gateway.networking.k8s.io/gateway-name' }, // GEP-1762 (Istio, kgateway, NGINX Gateway Fabric)
  { name: 'gateway.envoyproxy.io/owning-gateway-name', namespaceLabel: 'gateway.envoyproxy.io/owning-gateway-namespace' },
  { name: 'istio.io/gateway-name' },
  { name: 'io.cilium.gateway/owning-gateway' },
]

export interface KubeLabelSelector {
  readonly matchLabels?: Readonly<Record<string, string>>
  readonly matchExpressions?: ReadonlyArray<{ readonly key?: string, readonly operator?: string, readonly values?: readonly string[] }>
}

export interface KubeGatewayListener {
  readonly name?: string
  readonly hostname?: string
  readonly port?: number
  readonly protocol?: string
  readonly allowedRoutes?: {
    readonly namespaces?: { readonly from?: string, readonly selector?: KubeLabelSelector }
    readonly kinds?: ReadonlyArray<{ readonly group?: string, readonly kind?: string }>
  }
}

export interface KubeGateway {
  readonly metadata?: KubeObjectMeta
  readonly spec?: {
    readonly gatewayClassName?: string
    readonly listeners?: readonly KubeGatewayListener[]
  }
  readonly status?: {
    readonly addresses?: ReadonlyArray<{ readonly type?: string, readonly value?: string }>
  }
}

export interface KubeParentRef {
  readonly group?: string
  readonly kind?: string
  readonly namespace?: string
  readonly name?: string
  readonly sectionName?: string
  readonly port?: number
}

export interface KubeRoute {
  readonly metadata?: KubeObjectMeta
  readonly spec?: {
    readonly parentRefs?: readonly KubeParentRef[]
    readonly hostnames?: readonly string[]
  }
  readonly status?: {
    readonly parents?: ReadonlyArray<{
      readonly parentRef?: KubeParentRef
      readonly conditions?: ReadonlyArray<{ readonly type?: string, readonly status?: string }>
    }>
  }
}

export interface KubeNamespace {
  readonly metadata?: KubeObjectMeta
}

export type RouteKind = 'HTTPRoute' | 'GRPCRoute' | 'TLSRoute'

export interface GatewayObjects {
  readonly gateways?: readonly KubeGateway[]
  readonly httpRoutes?: readonly KubeRoute[]
  readonly grpcRoutes?: readonly KubeRoute[]
  readonly tlsRoutes?: readonly KubeRoute[]
  /** For allowedRoutes.namespaces.from: Selector. */
  readonly namespaces?: readonly KubeNamespace[]
}

/** A handled Service as the finder sees it: what kind-tunnel gave it, and its explicit classes. */
export interface Candidate {
  readonly key: string
  readonly svc: KubeService
  readonly ip?: string | undefined
  readonly hostname?: string | undefined
  /** Classes listed by `kind-tunnel.dev/ingress-class`; undefined when the annotation is absent. */
  readonly explicitClasses: readonly string[] | undefined
}

export type FoundBy = 'annotation' | 'address' | 'labels'

export interface GatewayProblem {
  /** CamelCase. */
  readonly reason: 'NoAddress' | 'NoService' | 'NoServicePort' | 'InvalidHostname' | 'RouteHostnameUnmatched'
  readonly message: string
}

export interface GatewayHostname {
  readonly name: string
  /** Listener name. */
  readonly listener: string
  /** `HTTPRoute ns/name`. */
  readonly route: string
  readonly scheme: 'http' | 'https'
  /** The Service port the name reaches. */
  readonly servicePort: number
}

export interface GatewayListenerPlan {
  readonly name: string
  readonly port: number
  readonly protocol: string
  readonly hostname?: string
  /** Routes attached to this listener. */
  readonly routes: number
}

/** What the finder concluded about one Gateway (computeRoutes adds what won). */
export interface GatewayFinding {
  readonly key: string
  readonly namespace: string
  readonly name: string
  readonly className?: string
  readonly addresses: readonly string[]
  /** `namespace/name` of the Services found, and how. */
  readonly services: readonly string[]
  readonly foundBy?: FoundBy
  readonly listeners: readonly GatewayListenerPlan[]
  readonly hostnames: readonly GatewayHostname[]
  readonly problems: readonly GatewayProblem[]
}

/** Names a Service answers for on one of its ports because a Gateway fronts it. */
export interface GatewayPortNames {
  readonly servicePort: number
  readonly scheme: 'http' | 'https'
  readonly names: readonly string[]
  readonly gateway: string
}

export interface GatewayResult {
  readonly gateways: GatewayFinding[]
  /** Service key → names by port. */
  readonly byService: Map<string, GatewayPortNames[]>
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

function isDeleting (o: { readonly metadata?: KubeObjectMeta }): boolean {
  const t = o.metadata?.deletionTimestamp
  return t !== undefined && t !== null && (t as unknown) !== ''
}

// ---------------------------------------------------------------- finding Services

function labelsFront (svc: KubeService, namespace: string, name: string): boolean {
  const labels = svc.metadata?.labels ?? {}
  const svcNs = svc.metadata?.namespace ?? 'default'
  for (const l of GATEWAY_SERVICE_LABELS) {
    if (labels[l.name] !== name) continue
    const ns = l.namespaceLabel !== undefined ? labels[l.namespaceLabel] ?? svcNs : svcNs
    if (ns === namespace) return true
  }
  return false
}

/**
 * The Services behind one object, by the order above. `classes`: its class
 * (Ingress class or gatewayClassName); `addresses`: its status addresses;
 * `byLabels`: the label heuristic for this kind of object.
 */
export function findServices (
  candidates: readonly Candidate[],
  cls: string | undefined,
  addresses: readonly string[],
  byLabels: (c: Candidate) => boolean,
): { keys: string[], by?: FoundBy } {
  if (cls !== undefined) {
    const explicit = candidates.filter((c) => c.explicitClasses?.includes(cls) === true)
    if (explicit.length > 0) return { keys: explicit.map((c) => c.key), by: 'annotation' }
  }
  if (addresses.length > 0) {
    const want = new Set(addresses.map((a) => a.toLowerCase()))
    const found = candidates.filter((c) => (c.ip !== undefined && want.has(c.ip)) || (c.hostname !== undefined && want.has(c.hostname)))
    if (found.length > 0) return { keys: found.map((c) => c.key), by: 'address' }
  }
  // Labels only speak for Services that did not name their classes explicitly.
  const labelled = candidates.filter((c) => c.explicitClasses === undefined && byLabels(c))
  if (labelled.length > 0) return { keys: labelled.map((c) => c.key), by: 'labels' }
  return { keys: [] }
}

// ---------------------------------------------------------------- Gateway API rules

/** Intersection of a listener hostname and a route hostname (both normalised); undefined when they do not meet. */
export function intersectHostnames (listener: string | undefined, route: string): string | undefined {
  if (listener === undefined) return route
  const lw = listener.startsWith('*.')
  const rw = route.startsWith('*.')
  if (!lw && !rw) return listener === route ? listener : undefined
  // `*.x` matches one or more labels in front of `x` (Gateway API, HTTPRouteSpec.hostnames).
  const under = (name: string, wildcard: string): boolean => name.endsWith(wildcard.slice(1))
  if (lw && !rw) return under(route, listener) ? route : undefined
  if (!lw && rw) return under(listener, route) ? listener : undefined
  if (listener === route) return listener
  if (under(route, listener)) return route
  if (under(listener, route)) return listener
  return undefined
}

function matchSelector (sel: KubeLabelSelector | undefined, labels: Readonly<Record<string, string>>): boolean {
  if (sel === undefined) return false
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false
  for (const e of sel.matchExpressions ?? []) {
    const k = e.key ?? ''
    const has = Object.prototype.hasOwnProperty.call(labels, k)
    const vals = e.values ?? []
    switch (e.operator) {
      case 'In': if (!has || !vals.includes(labels[k] as string)) return false; break
      case 'NotIn': if (has && vals.includes(labels[k] as string)) return false; break
      case 'Exists': if (!has) return false; break
      case 'DoesNotExist': if (has) return false; break
      default: return false
    }
  }
  return true
}

const DEFAULT_KINDS: Record<string, readonly RouteKind[]> = {
  HTTP: ['HTTPRoute', 'GRPCRoute'],
  HTTPS: ['HTTPRoute', 'GRPCRoute'],
  TLS: ['TLSRoute'],
}

function listenerAllows (l: KubeGatewayListener, gwNs: string, kind: RouteKind, routeNs: string, nsLabels: (ns: string) => Readonly<Record<string, string>>): boolean {
  const protocol = l.protocol ?? ''
  const compatible = DEFAULT_KINDS[protocol] ?? []
  if (!compatible.includes(kind)) return false
  const kinds = l.allowedRoutes?.kinds ?? []
  if (kinds.length > 0 && !kinds.some((k) => (k.group ?? GATEWAY_GROUP) === GATEWAY_GROUP && k.kind === kind)) return false
  const from = l.allowedRoutes?.namespaces?.from ?? 'Same'
  if (from === 'All') return true
  if (from === 'Same') return routeNs === gwNs
  if (from === 'Selector') return matchSelector(l.allowedRoutes?.namespaces?.selector, { 'kubernetes.io/metadata.name': routeNs, ...nsLabels(routeNs) })
  return false
}

function refersTo (ref: KubeParentRef, routeNs: string, gwNs: string, gwName: string): boolean {
  return (ref.group ?? GATEWAY_GROUP) === GATEWAY_GROUP && (ref.kind ?? 'Gateway') === 'Gateway' &&
    (ref.namespace ?? routeNs) === gwNs && ref.name === gwName
}

/** The implementation said this route is not accepted by this parent. */
function rejected (route: KubeRoute, ref: KubeParentRef, routeNs: string): boolean {
  for (const p of route.status?.parents ?? []) {
    const r = p.parentRef
    if (r === undefined || r.name !== ref.name || (r.namespace ?? routeNs) !== (ref.namespace ?? routeNs)) continue
    if ((r.sectionName ?? '') !== (ref.sectionName ?? '') || (r.port ?? 0) !== (ref.port ?? 0)) continue
    if ((p.conditions ?? []).some((c) => c.type === 'Accepted' && c.status === 'False')) return true
  }
  return false
}

function servicePortFor (svc: KubeService | undefined, listenerPort: number): KubeServicePort | undefined {
  const ports = (svc?.spec?.ports ?? []).filter((p) => (p.protocol ?? 'TCP') === 'TCP')
  return ports.find((p) => p.port === listenerPort) ?? ports.find((p) => p.targetPort === listenerPort)
}

function addressesOf (gw: KubeGateway): string[] {
  const out: string[] = []
  for (const a of gw.status?.addresses ?? []) {
    if (typeof a.value === 'string' && a.value !== '') out.push(canonicalIp(a.value) ?? a.value.toLowerCase())
  }
  return out
}

/**
 * Every Gateway's Services and names. `candidates`: the Services kind-tunnel
 * serves this pass, with the addresses it gave them.
 */
export function computeGatewayNames (objs: GatewayObjects, candidates: readonly Candidate[]): GatewayResult {
  const byService = new Map<string, GatewayPortNames[]>()
  const gateways: GatewayFinding[] = []
  const gws = (objs.gateways ?? []).filter((g) => !isDeleting(g) && g.metadata?.name !== undefined).sort(olderFirst)
  if (gws.length === 0) return { gateways, byService }
  const nsLabelMap = new Map<string, Readonly<Record<string, string>>>()
  for (const n of objs.namespaces ?? []) if (n.metadata?.name !== undefined) nsLabelMap.set(n.metadata.name, n.metadata.labels ?? {})
  const nsLabels = (ns: string): Readonly<Record<string, string>> => nsLabelMap.get(ns) ?? {}
  // Routes by the Gateways they name (`namespace/name`), oldest first, so
  // each Gateway looks only at its own.
  interface Attached { kind: RouteKind, route: KubeRoute, hostnames: Array<string | null> }
  const byParent = new Map<string, Attached[]>()
  for (const [kind, list] of [['HTTPRoute', objs.httpRoutes], ['GRPCRoute', objs.grpcRoutes], ['TLSRoute', objs.tlsRoutes]] as const) {
    for (const r of [...(list ?? [])].sort(olderFirst)) {
      if (isDeleting(r)) continue
      const rns = r.metadata?.namespace ?? 'default'
      const a: Attached = { kind, route: r, hostnames: (r.spec?.hostnames ?? []).map((h) => normalizeHostname(h)) }
      const parents = new Set<string>()
      for (const ref of r.spec?.parentRefs ?? []) {
        if ((ref.group ?? GATEWAY_GROUP) !== GATEWAY_GROUP || (ref.kind ?? 'Gateway') !== 'Gateway' || ref.name === undefined) continue
        parents.add(`${ref.namespace ?? rns}/${ref.name}`)
      }
      for (const k of parents) {
        let arr = byParent.get(k)
        if (arr === undefined) byParent.set(k, arr = [])
        arr.push(a)
      }
    }
  }
  const byKey = new Map(candidates.map((c) => [c.key, c]))
  // Route → did any of its hostnames meet a listener of a parent it names?
  const unmatched = new Map<string, { route: string, gateway: string, names: string[] }>()
  const matchedRoutes = new Set<string>()

  for (const gw of gws) {
    const namespace = gw.metadata?.namespace ?? 'default'
    const name = gw.metadata?.name as string
    const key = objectKey(gw)
    const className = gw.spec?.gatewayClassName
    const addresses = addressesOf(gw)
    const problems: GatewayProblem[] = []
    const found = findServices(candidates, className, addresses, (c) => labelsFront(c.svc, namespace, name))
    if (addresses.length === 0) {
      problems.push({ reason: 'NoAddress', message: `Gateway ${key} has no status.addresses yet: its implementation has not published the address of its Service` })
    }
    if (found.keys.length === 0) {
      problems.push({ reason: 'NoService', message: addresses.length > 0
        ? `no LoadBalancer Service kind-tunnel serves has the address ${addresses.join(', ')} of Gateway ${key}`
        : `no LoadBalancer Service kind-tunnel serves was found for Gateway ${key}` })
    }
    const listeners: GatewayListenerPlan[] = []
    const hostnames: GatewayHostname[] = []
    const seenListener = new Set<string>()
    for (const l of gw.spec?.listeners ?? []) {
      const lname = l.name ?? ''
      if (typeof l.port !== 'number' || seenListener.has(lname)) continue
      seenListener.add(lname)
      const protocol = l.protocol ?? ''
      let lhost: string | undefined
      if (l.hostname !== undefined && l.hostname !== '') {
        const n = normalizeHostname(l.hostname)
        if (n === null) {
          problems.push({ reason: 'InvalidHostname', message: `listener ${lname}: hostname ${JSON.stringify(l.hostname)} is not a hostname; listener skipped` })
          continue
        }
        lhost = n
      }
      const scheme = protocol === 'HTTP' ? 'http' : protocol === 'HTTPS' || protocol === 'TLS' ? 'https' : undefined
      let attached = 0
      const names = new Map<string, string>() // name → route
      for (const { kind, route, hostnames: normalized } of byParent.get(key) ?? []) {
        const rns = route.metadata?.namespace ?? 'default'
        const rkey = `${kind} ${rns}/${route.metadata?.name ?? ''}`
        const refs = (route.spec?.parentRefs ?? []).filter((ref) => refersTo(ref, rns, namespace, name))
        const ref = refs.find((r) => (r.sectionName === undefined || r.sectionName === lname) && (r.port === undefined || r.port === l.port))
        if (ref === undefined || rejected(route, ref, rns)) continue
        if (!listenerAllows(l, namespace, kind, rns, nsLabels)) continue
        const raw = route.spec?.hostnames ?? []
        const effective: string[] = []
        const valid: string[] = []
        for (const n of normalized) {
          if (n === null) continue
          valid.push(n)
          const x = intersectHostnames(lhost, n)
          if (x !== undefined) effective.push(x)
        }
        if (raw.length === 0) {
          // No route hostnames: the route takes the listener's hostname (or every name).
          if (lhost !== undefined) effective.push(lhost)
        } else if (effective.length === 0) {
          if (!matchedRoutes.has(rkey)) unmatched.set(rkey, { route: rkey, gateway: key, names: valid })
          continue
        }
        attached++
        matchedRoutes.add(rkey)
        unmatched.delete(rkey)
        for (const n of effective) if (!names.has(n)) names.set(n, rkey)
      }
      listeners.push({ name: lname, port: l.port, protocol, ...(lhost !== undefined ? { hostname: lhost } : {}), routes: attached })
      if (scheme === undefined || names.size === 0) continue
      for (const svcKey of found.keys) {
        const c = byKey.get(svcKey)
        const sp = servicePortFor(c?.svc, l.port)
        if (sp === undefined || typeof sp.port !== 'number') {
          problems.push({ reason: 'NoServicePort', message: `listener ${lname} (port ${l.port}): Service ${svcKey} has no TCP port ${l.port}; its names are not routed` })
          continue
        }
        const list = [...names.keys()].sort(cmp)
        let arr = byService.get(svcKey)
        if (arr === undefined) byService.set(svcKey, arr = [])
        arr.push({ servicePort: sp.port, scheme, names: list, gateway: key })
        for (const n of list) hostnames.push({ name: n, listener: lname, route: names.get(n) as string, scheme, servicePort: sp.port })
      }
    }
    gateways.push({
      key,
      namespace,
      name,
      ...(className !== undefined ? { className } : {}),
      addresses,
      services: found.keys,
      ...(found.by !== undefined ? { foundBy: found.by } : {}),
      listeners,
      hostnames: dedupeHostnames(hostnames),
      problems,
    })
  }
  for (const u of unmatched.values()) {
    const g = gateways.find((x) => x.key === u.gateway)
    if (g === undefined) continue
    ;(g.problems as GatewayProblem[]).push({
      reason: 'RouteHostnameUnmatched',
      message: `${u.route}: hostnames ${u.names.join(', ')} match no listener hostname of Gateway ${u.gateway}; the route gets no name`,
    })
  }
  gateways.sort((a, b) => cmp(a.key, b.key))
  return { gateways, byService }
}

function dedupeHostnames (hs: GatewayHostname[]): GatewayHostname[] {
  const seen = new Set<string>()
  const out: GatewayHostname[] = []
  for (const h of hs) {
    const k = `${h.name}\0${h.scheme}\0${h.servicePort}`
    if (seen.has(k)) continue
    seen.add(k)
    out.push(h)
  }
  return out.sort((a, b) => cmp(a.name, b.name) || cmp(a.scheme, b.scheme))
}
