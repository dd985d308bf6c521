// The controller hands computeRoutes the objects @kubernetes/client-node
// produced: class instances with Date timestamps. They must be accepted as
// they are (the assignments below are the compile-time half of this test).

import t from 'tap'
import { loadAllYaml, type V1EndpointSlice, type V1Ingress, type V1IngressClass, type V1Node, type V1Service } from '@kubernetes/client-node'
import { computeRoutes } from '../../src/routing/compute.js'
import type { KubeEndpointSlice, KubeIngress, KubeIngressClass, KubeNode, KubeService } from '../../src/routing/kube.js'

const YAML = `
apiVersion: v1
kind: Service
metadata: { name: young, namespace: default, creationTimestamp: "2025-03-01T00:00:00Z", annotations: { kind-tunnel.dev/hostnames: shared.test } }
spec: { type: LoadBalancer, ports: [{ name: https, port: 443, protocol: TCP, nodePort: 30443 }] }
---
apiVersion: v1
kind: Service
metadata: { name: old, namespace: default, creationTimestamp: "2025-01-01T00:00:00Z", annotations: { kind-tunnel.dev/hostnames: shared.test } }
spec: { type: LoadBalancer, ports: [{ name: https, port: 443, protocol: TCP, nodePort: 31443 }] }
---
apiVersion: v1
kind: Node
metadata: { name: kind-worker }
status:
  addresses: [{ type: InternalIP, address: 172.18.0.3 }]
  conditions: [{ type: Ready, status: "True", lastHeartbeatTime: "2025-01-01T00:00:00Z" }]
`

t.test('client-node objects (Date timestamps) go straight in', async (t) => {
  const objs = loadAllYaml(YAML) as Array<V1Service | V1Node>
  const services = objs.filter((o): o is V1Service => o.kind === 'Service')
  const nodes = objs.filter((o): o is V1Node => o.kind === 'Node')
  t.ok(services[0]?.metadata?.creationTimestamp instanceof Date, 'timestamps are Dates')
  const sv: KubeService[] = services
  const nd: KubeNode[] = nodes
  const r = computeRoutes({ cluster: 'kind', services: sv, nodes: nd }, {})
  const route = r.table.listeners[0]?.routes.find((x) => x.names.includes('shared.test'))
  t.equal(route?.upstream.id, 'kind/default/old:443', 'creation time compared as Dates: the older wins')
  t.same(route?.upstream.endpoints, [{ host: '172.18.0.3', port: 31443 }])
})

// Compile-time: the other client-node types fit the shapes routing reads.
export function shapes (i: V1Ingress, c: V1IngressClass, e: V1EndpointSlice): [KubeIngress, KubeIngressClass, KubeEndpointSlice] {
  return [i, c, e]
}
