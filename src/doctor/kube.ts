// What the doctor reads from a cluster's API, once, through the control
// module's clients: LoadBalancer Services, Nodes, Ingresses, and CoreDNS
// (kube-system pods labelled k8s-app=kube-dns, and the kube-dns Service's
// EndpointSlices). Each read may fail on its own; a failure becomes a line,
// not an exception.

import { errorCode } from '../errors.js'
import { loadKubeConfig, makeClients, requestOptions, statusCodeOf } from '../control/kube.js'
import type { KubeIngress, KubeNode, KubeService } from '../routing/kube.js'

export type Read<T> = { ok: true, value: T } | { ok: false, status?: number, message: string }

export interface CoreDnsFacts {
  /** kube-system pods labelled k8s-app=kube-dns: how many, how many Ready. */
  readonly pods: Read<{ total: number, ready: number }>
  /** The kube-dns Service: absent, or its ready endpoints. */
  readonly endpoints: Read<{ service: boolean, ready: number }>
}

export interface ClusterFacts {
  readonly cluster: string
  readonly server: string
  readonly services: Read<KubeService[]>
  readonly nodes: Read<KubeNode[]>
  readonly ingresses: Read<KubeIngress[]>
  readonly coreDns: CoreDnsFacts
}

async function read<T> (fn: () => Promise<T>): Promise<Read<T>> {
  try {
    return { ok: true, value: await fn() }
  } catch (err) {
    const status = statusCodeOf(err)
    const message = status !== undefined ? `HTTP ${status}` : `${errorCode(err)}: ${(err as Error).message?.split('\n')[0] ?? String(err)}`
    return { ok: false, ...(status !== undefined ? { status } : {}), message }
  }
}

export async function readClusterFacts (cluster: string, kubeconfig: string, timeoutMs = 10_000): Promise<ClusterFacts> {
  const clients = makeClients(loadKubeConfig(kubeconfig))
  const opts = requestOptions({ timeoutMs })
  const [services, nodes, ingresses, pods, endpoints] = await Promise.all([
    read(async () => (await clients.core.listServiceForAllNamespaces({}, opts)).items as unknown as KubeService[]),
    read(async () => (await clients.core.listNode({}, opts)).items as unknown as KubeNode[]),
    read(async () => (await clients.networking.listIngressForAllNamespaces({}, opts)).items as unknown as KubeIngress[]),
    read(async () => {
      const items = (await clients.core.listNamespacedPod({ namespace: 'kube-system', labelSelector: 'k8s-app=kube-dns' }, opts)).items
      const ready = items.filter((p) => (p.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True')).length
      return { total: items.length, ready }
    }),
    read(async () => {
      let service = true
      try {
        await clients.core.readNamespacedService({ name: 'kube-dns', namespace: 'kube-system' }, opts)
      } catch (err) {
        if (statusCodeOf(err) !== 404) throw err
        service = false
      }
      if (!service) return { service, ready: 0 }
      const slices = (await clients.discovery.listNamespacedEndpointSlice({ namespace: 'kube-system', labelSelector: 'kubernetes.io/service-name=kube-dns' }, opts)).items
      // EndpointConditions.ready: "nil should be interpreted as true".
      const ready = slices.reduce((n, s) => n + (s.endpoints ?? []).filter((e) => e.conditions?.ready !== false).length, 0)
      return { service, ready }
    }),
  ])
  return { cluster, server: clients.server, services, nodes, ingresses, coreDns: { pods, endpoints } }
}
