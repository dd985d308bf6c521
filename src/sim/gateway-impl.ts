// A tiny simulated Gateway API implementation for the test API server (the
// demo and the tests): for every Gateway of its class it keeps a
// LoadBalancer Service with one port per listener port, and once that
// Service has an address in status.loadBalancer.ingress it publishes the
// address in the Gateway's status.addresses and marks the Gateway Accepted
// and Programmed, as Envoy Gateway, Istio or NGINX Gateway Fabric do. It
// routes nothing itself: the nodes' NodePorts are whatever the caller serves.

import type { ApiServer, KubeObject } from './apiserver.js'

export const SIM_GATEWAY_CLASS = 'kind-tunnel-sim'
export const SIM_GATEWAY_CONTROLLER = 'kind-tunnel.dev/sim-gateway-controller'
const GROUP = 'gateway.networking.k8s.io'

export interface SimGatewayOptions {
  /** gatewayClassName handled (default SIM_GATEWAY_CLASS). */
  readonly className?: string
  /** Service name for a Gateway (default `<gateway>-gateway`, in the Gateway's namespace). */
  readonly serviceName?: (gateway: string) => string
  /** Labels put on the Service (default none: kind-tunnel must find it by address). */
  readonly labels?: (gateway: string, namespace: string) => Record<string, string>
  /** How often to look again. Default 50 ms. */
  readonly everyMs?: number
}

interface Gw { metadata: { name: string, namespace: string, generation?: number }, spec?: { gatewayClassName?: string, listeners?: Array<{ name?: string, port?: number }> }, status?: { addresses?: Array<{ value?: string }> } }
interface Svc { status?: { loadBalancer?: { ingress?: Array<{ ip?: string, hostname?: string }> } }, spec?: { ports?: Array<{ name?: string, port?: number, nodePort?: number }> } }

/** Upstream-shaped Gateway API CRDs (schemas cut to preserve-unknown-fields), for api.create(). */
export function gatewayApiCrds (o: { tlsRouteVersion?: string } = {}): KubeObject[] {
  const crd = (plural: string, kind: string, versions: string[], scope = 'Namespaced', shortNames: string[] = []): KubeObject => ({
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.${GROUP}`, annotations: { 'gateway.networking.k8s.io/bundle-version': 'v1.2.1', 'gateway.networking.k8s.io/channel': 'experimental' } },
    spec: {
      group: GROUP,
      names: { kind, listKind: `${kind}List`, plural, singular: kind.toLowerCase(), categories: ['gateway-api'], ...(shortNames.length > 0 ? { shortNames } : {}) },
      scope,
      versions: versions.map((v, i) => ({
        name: v,
        served: true,
        storage: i === 0,
        schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
        subresources: { status: {} },
      })),
    },
  })
  return [
    crd('gatewayclasses', 'GatewayClass', ['v1', 'v1beta1'], 'Cluster', ['gc']),
    crd('gateways', 'Gateway', ['v1', 'v1beta1'], 'Namespaced', ['gtw']),
    crd('httproutes', 'HTTPRoute', ['v1', 'v1beta1']),
    crd('grpcroutes', 'GRPCRoute', ['v1']),
    crd('tlsroutes', 'TLSRoute', [o.tlsRouteVersion ?? 'v1alpha2']),
  ]
}

export class SimGatewayController {
  readonly #api: ApiServer
  readonly #className: string
  readonly #serviceName: (gateway: string) => string
  readonly #labels: (gateway: string, namespace: string) => Record<string, string>
  readonly #everyMs: number
  #timer: NodeJS.Timeout | undefined

  constructor (api: ApiServer, o: SimGatewayOptions = {}) {
    this.#api = api
    this.#className = o.className ?? SIM_GATEWAY_CLASS
    this.#serviceName = o.serviceName ?? ((g) => `${g}-gateway`)
    this.#labels = o.labels ?? (() => ({}))
    this.#everyMs = o.everyMs ?? 50
  }

  start (): void {
    if (this.#timer !== undefined) return
    this.#timer = setInterval(() => { try { this.reconcile() } catch {} }, this.#everyMs)
    this.#timer.unref()
  }

  stop (): void {
    if (this.#timer !== undefined) clearInterval(this.#timer)
    this.#timer = undefined
  }

  /** The Service of a Gateway, once created. */
  service (gateway: string, namespace = 'default'): KubeObject | undefined {
    return this.#api.tryGet('services', this.#serviceName(gateway), namespace)
  }

  /** One pass: Services for Gateways of the class, addresses back into the Gateways' status. */
  reconcile (): void {
    if (this.#api.tryGet('customresourcedefinitions', `gateways.${GROUP}`) === undefined) return
    for (const raw of this.#api.list(`gateways.${GROUP}`)) {
      const gw = raw as unknown as Gw
      if (gw.spec?.gatewayClassName !== this.#className) continue
      const { name, namespace } = gw.metadata
      const svcName = this.#serviceName(name)
      const ports = [...new Set((gw.spec.listeners ?? []).map((l) => l.port).filter((p): p is number => typeof p === 'number'))].sort((a, b) => a - b)
      const wantPorts = ports.map((p) => ({ name: `p${p}`, port: p, targetPort: 10000 + p, protocol: 'TCP' }))
      const cur = this.#api.tryGet('services', svcName, namespace) as (KubeObject & Svc) | undefined
      if (cur === undefined) {
        this.#api.create({
          apiVersion: 'v1',
          kind: 'Service',
          metadata: { name: svcName, namespace, labels: this.#labels(name, namespace) },
          spec: { type: 'LoadBalancer', selector: { gateway: name }, ports: wantPorts },
        })
        continue
      }
      const have = (cur.spec?.ports ?? []).map((p) => p.port).join(',')
      if (have !== ports.join(',')) {
        this.#api.mutate('services', svcName, (s) => {
          const old = ((s.spec as Svc['spec'])?.ports ?? [])
          ;(s.spec as Record<string, unknown>).ports = wantPorts.map((w) => ({ ...w, ...(old.find((o) => o.port === w.port)?.nodePort !== undefined ? { nodePort: old.find((o) => o.port === w.port)?.nodePort } : {}) }))
        }, { namespace })
        continue
      }
      const addrs = (cur.status?.loadBalancer?.ingress ?? []).flatMap((i) => i.ip !== undefined ? [{ type: 'IPAddress', value: i.ip }] : i.hostname !== undefined ? [{ type: 'Hostname', value: i.hostname }] : [])
      const now = (gw.status?.addresses ?? []).map((a) => a.value).join(',')
      if (now === addrs.map((a) => a.value).join(',')) continue
      const t = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z')
      const cond = (type: string, ok: boolean, reason: string): Record<string, unknown> => ({ type, status: ok ? 'True' : 'False', reason, message: '', lastTransitionTime: t, observedGeneration: gw.metadata.generation ?? 1 })
      this.#api.patch(`gateways.${GROUP}`, name, {
        status: {
          addresses: addrs.length > 0 ? addrs : null,
          conditions: [cond('Accepted', true, 'Accepted'), cond('Programmed', addrs.length > 0, addrs.length > 0 ? 'Programmed' : 'AddressNotAssigned')],
        },
      }, { namespace, subresource: 'status' })
    }
  }
}
