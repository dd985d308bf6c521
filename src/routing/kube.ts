// Minimal structural shapes of the Kubernetes objects routing reads. They are
// the JSON shapes of v1 Service, v1 Node, discovery.k8s.io/v1 EndpointSlice
// and networking.k8s.io/v1 Ingress/IngressClass, cut down to the fields used
// here, so objects from @kubernetes/client-node match them structurally while
// routing/ stays free of that import (design.md, module boundaries).
//
// Every field is optional and readonly: routing never trusts that the API
// server (or a test) filled anything in, and never mutates its input.

export interface KubeObjectMeta {
  readonly name?: string
  readonly namespace?: string
  readonly uid?: string
  /** RFC 3339 text, or a Date (client-node deserialises timestamps to Date). */
  readonly creationTimestamp?: string | Date
  readonly deletionTimestamp?: string | Date
  readonly labels?: Readonly<Record<string, string>>
  readonly annotations?: Readonly<Record<string, string>>
  readonly finalizers?: readonly string[]
}

export interface KubeServicePort {
  readonly name?: string
  readonly protocol?: string
  readonly appProtocol?: string
  readonly port?: number
  readonly targetPort?: number | string
  readonly nodePort?: number
}

export interface KubePortStatus {
  readonly port?: number
  readonly protocol?: string
  readonly error?: string
}

export interface KubeLoadBalancerIngress {
  readonly ip?: string
  readonly hostname?: string
  readonly ipMode?: string
  readonly ports?: readonly KubePortStatus[]
}

export interface KubeService {
  readonly metadata?: KubeObjectMeta
  readonly spec?: {
    readonly type?: string
    readonly loadBalancerClass?: string
    readonly loadBalancerIP?: string
    readonly loadBalancerSourceRanges?: readonly string[]
    readonly allocateLoadBalancerNodePorts?: boolean
    readonly externalTrafficPolicy?: string
    readonly healthCheckNodePort?: number
    readonly sessionAffinity?: string
    readonly ipFamilies?: readonly string[]
    readonly ipFamilyPolicy?: string
    readonly ports?: readonly KubeServicePort[]
  }
  readonly status?: {
    readonly loadBalancer?: {
      readonly ingress?: readonly KubeLoadBalancerIngress[]
    }
  }
}

export interface KubeNode {
  readonly metadata?: KubeObjectMeta
  readonly spec?: {
    readonly unschedulable?: boolean
  }
  readonly status?: {
    readonly addresses?: ReadonlyArray<{ readonly type?: string, readonly address?: string }>
    readonly conditions?: ReadonlyArray<{ readonly type?: string, readonly status?: string }>
  }
}

export interface KubeEndpointSlice {
  /** IPv4, IPv6 or FQDN. */
  readonly addressType?: string
  readonly metadata?: KubeObjectMeta
  readonly endpoints?: ReadonlyArray<{
    readonly addresses?: readonly string[]
    readonly conditions?: { readonly ready?: boolean, readonly serving?: boolean, readonly terminating?: boolean }
    readonly nodeName?: string
  }>
}

export interface KubeIngressBackend {
  readonly service?: { readonly name?: string }
}

export interface KubeIngress {
  readonly metadata?: KubeObjectMeta
  readonly spec?: {
    readonly ingressClassName?: string
    readonly defaultBackend?: KubeIngressBackend
    readonly rules?: ReadonlyArray<{
      readonly host?: string
    }>
  }
  readonly status?: {
    readonly loadBalancer?: {
      readonly ingress?: readonly KubeLoadBalancerIngress[]
    }
  }
}

export interface KubeIngressClass {
  readonly metadata?: KubeObjectMeta
  readonly spec?: {
    readonly controller?: string
  }
}

/** `namespace/name` of an object; namespace `default` when absent. */
export function objectKey (o: { readonly metadata?: KubeObjectMeta }): string {
  return `${o.metadata?.namespace ?? 'default'}/${o.metadata?.name ?? ''}`
}

/** Milliseconds since the epoch of a Kubernetes timestamp; +Infinity when absent or unreadable (sorts last). */
export function timestampMs (t: string | Date | undefined): number {
  if (t === undefined) return Number.POSITIVE_INFINITY
  const ms = t instanceof Date ? t.getTime() : Date.parse(t)
  return Number.isFinite(ms) ? ms : Number.POSITIVE_INFINITY
}

// Sort keys per object, computed once: sorts compare each object many times,
// and Date.parse is the costly part. A WeakMap keeps this pure from the
// caller's side (nothing is written to the objects, nothing outlives them).
const sortKeys = new WeakMap<object, { ms: number, key: string }>()

function sortKey (o: { readonly metadata?: KubeObjectMeta }): { ms: number, key: string } {
  let k = sortKeys.get(o)
  if (k === undefined) {
    k = { ms: timestampMs(o.metadata?.creationTimestamp), key: objectKey(o) }
    sortKeys.set(o, k)
  }
  return k
}

/**
 * Who may answer for a contested hostname, within one cluster (computeRoutes)
 * and between clusters (mergeTables): the Service whose own generated name it
 * is, then the older Service, then `namespace/name`, then the cluster's name.
 */
export interface NameClaimant {
  /** The name is this Service's generated `<service>.<namespace>.<suffix>`. */
  readonly generated: boolean
  /** creationTimestamp in ms (timestampMs: +Infinity when unknown). */
  readonly createdMs: number
  /** `namespace/name`. */
  readonly key: string
  readonly cluster?: string
}

/** Negative when `a` keeps the name over `b`, positive when `b` does, 0 for the same Service. */
export function nameClaimOrder (a: NameClaimant, b: NameClaimant): number {
  if (a.generated !== b.generated) return a.generated ? -1 : 1
  if (a.createdMs !== b.createdMs) return a.createdMs < b.createdMs ? -1 : 1
  if (a.key !== b.key) return a.key < b.key ? -1 : 1
  const ca = a.cluster ?? ''
  const cb = b.cluster ?? ''
  return ca < cb ? -1 : ca > cb ? 1 : 0
}

/** The order of `nameClaimOrder` for a Service object, without the generated-name rule. */
export function claimantOf (o: { readonly metadata?: KubeObjectMeta }, generated: boolean, cluster?: string): NameClaimant {
  const k = sortKey(o)
  return { generated, createdMs: k.ms, key: k.key, ...(cluster !== undefined ? { cluster } : {}) }
}

/** Order objects oldest first, then by `namespace/name`: the tie-break used for every conflict. */
export function olderFirst<T extends { readonly metadata?: KubeObjectMeta }> (a: T, b: T): number {
  const ka = sortKey(a)
  const kb = sortKey(b)
  if (ka.ms !== kb.ms) return ka.ms < kb.ms ? -1 : 1
  return ka.key < kb.key ? -1 : ka.key > kb.key ? 1 : 0
}
