// Builders for the plain Kubernetes shapes computeRoutes reads. Not a test
// file itself (tap reports it as "no tests found").

import type { KubeIngress, KubeIngressClass, KubeNode, KubeService, KubeServicePort, KubeLoadBalancerIngress } from '../../src/routing/kube.js'

export interface NodeOpts {
  ip?: string
  ip6?: string
  ready?: boolean
  labels?: Record<string, string>
  deleting?: boolean
}

export function node (name: string, o: NodeOpts = {}): KubeNode {
  const addresses: Array<{ type: string, address: string }> = [{ type: 'Hostname', address: name }]
  if (o.ip !== undefined) addresses.push({ type: 'InternalIP', address: o.ip })
  if (o.ip6 !== undefined) addresses.push({ type: 'InternalIP', address: o.ip6 })
  return {
    metadata: {
      name,
      ...(o.labels !== undefined ? { labels: o.labels } : {}),
      ...(o.deleting === true ? { deletionTimestamp: '2025-01-01T00:00:00Z' } : {}),
    },
    status: {
      addresses,
      conditions: [{ type: 'MemoryPressure', status: 'False' }, { type: 'Ready', status: o.ready === false ? 'False' : 'True' }],
    },
  }
}

export function tcp (port: number, nodePort: number | undefined, extra: Partial<KubeServicePort> = {}): KubeServicePort {
  return { port, protocol: 'TCP', ...(nodePort !== undefined ? { nodePort } : {}), ...extra }
}

export interface SvcOpts {
  ns?: string
  ports?: KubeServicePort[]
  created?: string
  type?: string
  loadBalancerClass?: string
  annotations?: Record<string, string>
  labels?: Record<string, string>
  finalizers?: string[]
  deleting?: boolean
  ingress?: KubeLoadBalancerIngress[]
  spec?: NonNullable<KubeService['spec']>
}

export function svc (name: string, o: SvcOpts = {}): KubeService {
  return {
    metadata: {
      name,
      namespace: o.ns ?? 'default',
      creationTimestamp: o.created ?? '2025-01-01T00:00:00Z',
      ...(o.annotations !== undefined ? { annotations: o.annotations } : {}),
      ...(o.labels !== undefined ? { labels: o.labels } : {}),
      ...(o.finalizers !== undefined ? { finalizers: o.finalizers } : {}),
      ...(o.deleting === true ? { deletionTimestamp: '2025-06-01T00:00:00Z' } : {}),
    },
    spec: {
      type: o.type ?? 'LoadBalancer',
      ...(o.loadBalancerClass !== undefined ? { loadBalancerClass: o.loadBalancerClass } : {}),
      ports: o.ports ?? [tcp(80, 30080, { name: 'http' })],
      ...o.spec,
    },
    ...(o.ingress !== undefined ? { status: { loadBalancer: { ingress: o.ingress } } } : {}),
  }
}

export function ingress (name: string, ns: string, cls: string | undefined, hosts: string[], created = '2025-01-01T00:00:00Z'): KubeIngress {
  return {
    metadata: { name, namespace: ns, creationTimestamp: created },
    spec: {
      ...(cls !== undefined ? { ingressClassName: cls } : {}),
      rules: hosts.map((h) => ({ host: h })),
    },
  }
}

export function ingressClass (name: string, labels: Record<string, string> = {}, isDefault = false): KubeIngressClass {
  return {
    metadata: {
      name,
      labels,
      ...(isDefault ? { annotations: { 'ingressclass.kubernetes.io/is-default-class': 'true' } } : {}),
    },
    spec: { controller: 'k8s.io/ingress-nginx' },
  }
}

/** Two Ready worker nodes and a label-excluded control plane, as kind makes them. */
export const KIND_NODES: KubeNode[] = [
  node('kind-worker2', { ip: '172.18.0.4' }),
  node('kind-control-plane', { ip: '172.18.0.2', labels: { 'node.kubernetes.io/exclude-from-external-load-balancers': '' } }),
  node('kind-worker', { ip: '172.18.0.3' }),
]
