// cloud-provider-kind (kubernetes-sigs/cloud-provider-kind) beside
// kind-tunnel: it runs one Envoy container per LoadBalancer Service, named
// `kindccm-<hash>` and labelled io.x-k8s.cloud-provider-kind.cluster=<cluster>
// and io.x-k8s.cloud-provider-kind.loadbalancer.name=<cluster>/<ns>/<name>
// (its pkg/constants and pkg/loadbalancer/server.go). Both controllers claim
// every class-less LoadBalancer Service, so finding these containers is
// finding a conflict.

import type { DockerClient } from './engine.js'

export const CPK_CLUSTER_LABEL = 'io.x-k8s.cloud-provider-kind.cluster'
export const CPK_LB_LABEL = 'io.x-k8s.cloud-provider-kind.loadbalancer.name'
export const CPK_NAME_PREFIX = 'kindccm-'

export interface CloudProviderKindContainer {
  readonly name: string
  readonly cluster: string
  /** `<namespace>/<name>` of the Service it serves, when labelled. */
  readonly service?: string
  readonly state: string
}

/** Every container cloud-provider-kind made (running or not). */
export async function findCloudProviderKind (docker: DockerClient): Promise<CloudProviderKindContainer[]> {
  const list = await docker.listContainers({ all: true, filters: { label: [CPK_CLUSTER_LABEL] } })
  return list.map((c) => {
    const lb = c.Labels?.[CPK_LB_LABEL] ?? ''
    const parts = lb.split('/')
    return {
      name: (c.Names[0] ?? c.Id).replace(/^\//, ''),
      cluster: c.Labels?.[CPK_CLUSTER_LABEL] ?? '',
      ...(parts.length === 3 ? { service: `${parts[1] ?? ''}/${parts[2] ?? ''}` } : {}),
      state: c.State,
    }
  }).sort((a, b) => a.name.localeCompare(b.name))
}
