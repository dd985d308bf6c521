import t from 'tap'
import { computeRoutes, EXCLUDE_LABEL } from '../../src/routing/compute.js'
import type { KubeNode } from '../../src/routing/kube.js'
import type { RoutingOptions } from '../../src/routing/compute.js'
import { node, svc, tcp, KIND_NODES } from './compute-fixtures.js'

const IP: RoutingOptions = { mode: 'ip', ipPool: '127.240.0.0/24' }

function upstreamOf (nodes: KubeNode[], s = svc('web'), opts: RoutingOptions = IP) {
  const r = computeRoutes({ cluster: 'kind', services: [s], nodes }, opts)
  return { up: r.table.listeners[0]?.default, plan: r.services[0], r }
}

t.test('backends are Ready nodes InternalIP:nodePort, sorted, with a stable id', async (t) => {
  const { up, plan } = upstreamOf(KIND_NODES)
  t.same(up, {
    id: 'kind/default/web:80',
    service: { cluster: 'kind', namespace: 'default', name: 'web', port: 80, created: '2025-01-01T00:00:00Z' },
    endpoints: [{ host: '172.18.0.3', port: 30080 }, { host: '172.18.0.4', port: 30080 }],
    policy: 'round-robin',
    health: { kind: 'http', port: 10256, path: '/healthz' },
  })
  t.same(plan?.nodes, ['kind-worker', 'kind-worker2'], 'the control plane is excluded by its label')
  t.notOk(plan?.excludedNodesUsed)
})

t.test('not Ready, deleting, address-less and excluded nodes are not backends', async (t) => {
  const nodes = [
    node('ready', { ip: '172.18.0.10' }),
    node('not-ready', { ip: '172.18.0.11', ready: false }),
    node('deleting', { ip: '172.18.0.12', deleting: true }),
    node('excluded', { ip: '172.18.0.13', labels: { [EXCLUDE_LABEL]: 'true' } }),
    node('no-ip'),
    { metadata: { name: 'no-conditions' }, status: { addresses: [{ type: 'InternalIP', address: '172.18.0.14' }] } },
    { metadata: { name: 'external-only' }, status: { addresses: [{ type: 'ExternalIP', address: '1.2.3.4' }], conditions: [{ type: 'Ready', status: 'True' }] } },
  ]
  const { up, plan } = upstreamOf(nodes)
  t.same(up?.endpoints, [{ host: '172.18.0.10', port: 30080 }])
  t.same(plan?.nodes, ['ready'])
})

t.test('a one-node kind cluster: the label-excluded control plane is used rather than nothing', async (t) => {
  const only = [node('kind-control-plane', { ip: '172.18.0.2', labels: { [EXCLUDE_LABEL]: '' } })]
  const { up, plan } = upstreamOf(only)
  t.same(up?.endpoints, [{ host: '172.18.0.2', port: 30080 }])
  t.equal(plan?.excludedNodesUsed, true)
  const strict = upstreamOf(only, svc('web'), { ...IP, excludedNodeFallback: false })
  t.same(strict.up?.endpoints, [])
  t.notOk(strict.plan?.excludedNodesUsed)
})

t.test('no Ready node: the listener stays, with no backends, and the plan says so', async (t) => {
  const { up, plan } = upstreamOf([node('down', { ip: '172.18.0.2', ready: false })])
  t.same(up?.endpoints, [])
  t.same(plan?.nodes, [])
  t.equal(plan?.action, 'serve')
  t.ok(plan?.findings.some((e) => e.reason === 'NoReadyNodes'))
})

t.test('address family: IPv4 preferred, single-stack IPv6 Services use IPv6', async (t) => {
  const nodes = [node('a', { ip: '172.18.0.2', ip6: 'fc00:f853:ccd:e793::2' }), node('b', { ip6: 'FC00:F853:CCD:E793::3' })]
  t.same(upstreamOf(nodes).up?.endpoints, [
    { host: '172.18.0.2', port: 30080 },
    { host: 'fc00:f853:ccd:e793::3', port: 30080 },
  ], 'unspecified family: v4 where there is one, else v6')
  const v6 = svc('web', { spec: { ipFamilies: ['IPv6'], ipFamilyPolicy: 'SingleStack' } })
  t.same(upstreamOf(nodes, v6).up?.endpoints, [
    { host: 'fc00:f853:ccd:e793::2', port: 30080 },
    { host: 'fc00:f853:ccd:e793::3', port: 30080 },
  ])
  const v4only = svc('web', { spec: { ipFamilies: ['IPv4'], ipFamilyPolicy: 'SingleStack' } })
  t.same(upstreamOf(nodes, v4only).up?.endpoints, [{ host: '172.18.0.2', port: 30080 }], 'a v6-only node has no v4 NodePort')
  const dual = svc('web', { spec: { ipFamilies: ['IPv6', 'IPv4'], ipFamilyPolicy: 'RequireDualStack' } })
  t.same(upstreamOf(nodes, dual).up?.endpoints.map((e) => e.host), ['172.18.0.2', 'fc00:f853:ccd:e793::3'])
})

t.test('health: kube-proxy for Cluster, healthCheckNodePort for Local', async (t) => {
  const local = svc('web', { spec: { externalTrafficPolicy: 'Local', healthCheckNodePort: 31999 } })
  t.same(upstreamOf(KIND_NODES, local).up?.health, { kind: 'http', port: 31999, path: '/healthz' })
  const cluster = svc('web', { spec: { externalTrafficPolicy: 'Cluster' } })
  t.same(upstreamOf(KIND_NODES, cluster).up?.health, { kind: 'http', port: 10256, path: '/healthz' })
})

t.test('policy: ClientIP affinity hashes, otherwise the configured default', async (t) => {
  t.equal(upstreamOf(KIND_NODES, svc('web', { spec: { sessionAffinity: 'ClientIP' } })).up?.policy, 'client-ip-hash')
  t.equal(upstreamOf(KIND_NODES, svc('web', { spec: { sessionAffinity: 'None' } }), { ...IP, defaultPolicy: 'least-connections' }).up?.policy, 'least-connections')
  t.equal(upstreamOf(KIND_NODES, svc('web', { spec: { sessionAffinity: 'ClientIP' } }), { ...IP, defaultPolicy: 'random' }).up?.policy, 'client-ip-hash')
})

t.test('dialer and pool size are copied into every upstream', async (t) => {
  const s = svc('web', { ports: [tcp(80, 30080), tcp(443, 30443)] })
  const { r } = upstreamOf(KIND_NODES, s, { ...IP, mode: 'both', dialer: 'relay:kind', poolSize: 4 })
  const ups = r.table.listeners.flatMap((l) => [l.default, ...l.routes.map((x) => x.upstream)]).filter((u) => u !== undefined)
  t.ok(ups.length >= 4)
  for (const u of ups) {
    t.equal(u.dialer, 'relay:kind')
    t.equal(u.poolSize, 4)
  }
  t.same([...new Set(ups.map((u) => u.id))].sort(), ['kind/default/web:443', 'kind/default/web:80'])
})

t.test('ready endpoints from EndpointSlices are reported when observed', async (t) => {
  const slices = [
    { metadata: { namespace: 'default', labels: { 'kubernetes.io/service-name': 'web' } }, endpoints: [{ conditions: { ready: true } }, { conditions: { ready: false } }, {}] },
    { metadata: { namespace: 'other', labels: { 'kubernetes.io/service-name': 'web' } }, endpoints: [{}] },
  ]
  const r = computeRoutes({ cluster: 'kind', services: [svc('web'), svc('idle')], nodes: KIND_NODES, endpointSlices: slices }, IP)
  t.same(r.services.map((p) => [p.key, p.readyEndpoints]), [['default/idle', 0], ['default/web', 2]])
  const none = computeRoutes({ cluster: 'kind', services: [svc('web')], nodes: KIND_NODES }, IP)
  t.equal(none.services[0]?.readyEndpoints, undefined)
})
