// CPU cost of computeRoutes with Gateway API objects, against the same
// Services without them (not a test: measured, never asserted).
//   node dist/test/gateway/measure-compute.js [gateways=100] [routesPerGateway=10]

import { computeRoutes, type ObservedState } from '../../src/routing/compute.js'
import type { KubeGateway, KubeRoute } from '../../src/routing/gateway.js'
import type { KubeNode, KubeService } from '../../src/routing/kube.js'

const N = Number(process.argv[2] ?? 100)
const R = Number(process.argv[3] ?? 10)
const nodes: KubeNode[] = [{ metadata: { name: 'n1' }, status: { addresses: [{ type: 'InternalIP', address: '172.18.0.2' }], conditions: [{ type: 'Ready', status: 'True' }] } }]
const services: KubeService[] = []
const gateways: KubeGateway[] = []
const httpRoutes: KubeRoute[] = []
for (let i = 0; i < N; i++) {
  const ns = `ns${i}`
  services.push({ metadata: { name: 'gw', namespace: ns, creationTimestamp: '2025-01-01T00:00:00Z' }, spec: { type: 'LoadBalancer', ports: [{ name: 'http', port: 80, nodePort: 30000 + i, protocol: 'TCP' }] } })
  gateways.push({ metadata: { name: 'gw', namespace: ns }, spec: { gatewayClassName: 'x', listeners: [{ name: 'http', protocol: 'HTTP', port: 80, hostname: `*.${ns}.test` }] }, status: { addresses: [{ value: `gw.${ns}.localhost` }] } })
  for (let j = 0; j < R; j++) httpRoutes.push({ metadata: { name: `r${j}`, namespace: ns }, spec: { parentRefs: [{ name: 'gw' }], hostnames: [`app${j}.${ns}.test`] } })
}
const withGateways: ObservedState = { cluster: 'c', services, nodes, gatewayApi: { gateways, httpRoutes } }
const without: ObservedState = { cluster: 'c', services, nodes }
const cpuMsPerPass = (o: ObservedState, passes = 20): number => {
  computeRoutes(o, { mode: 'hostname' })
  const t0 = process.cpuUsage()
  for (let k = 0; k < passes; k++) computeRoutes(o, { mode: 'hostname' })
  const d = process.cpuUsage(t0)
  return (d.user + d.system) / 1000 / passes
}
const names = computeRoutes(withGateways, { mode: 'hostname' }).gateways.reduce((a, g) => a + g.hostnames.length, 0)
console.log(`${N} Gateways x ${R} HTTPRoutes (${names} names): computeRoutes ${cpuMsPerPass(withGateways).toFixed(1)} ms CPU per pass; the same Services without them ${cpuMsPerPass(without).toFixed(1)} ms`)
