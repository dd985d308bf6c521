import t from 'tap'
import fc from 'fast-check'
import { computeRoutes } from '../../src/routing/compute.js'
import type { ObservedState, RoutingOptions } from '../../src/routing/compute.js'
import { ingress, ingressClass, node, svc, tcp, KIND_NODES } from './compute-fixtures.js'

const observed: ObservedState = {
  cluster: 'kind',
  nodes: [...KIND_NODES, node('kind-worker3', { ip: '172.18.0.5', ip6: 'fc00::5' }), node('down', { ip: '172.18.0.6', ready: false })],
  services: [
    svc('web', { created: '2025-01-01T00:00:00Z', ports: [tcp(80, 30080, { name: 'http' }), tcp(443, 30443, { name: 'https' })], annotations: { 'kind-tunnel.dev/hostnames': 'www.test,shared.test' } }),
    svc('api', { ns: 'prod', created: '2025-01-02T00:00:00Z', ports: [tcp(443, 31443), tcp(9000, 31900), { port: 53, protocol: 'UDP', nodePort: 31053 }], annotations: { 'kind-tunnel.dev/hostnames': 'shared.test' }, spec: { sessionAffinity: 'ClientIP', loadBalancerSourceRanges: ['10.0.0.0/8'] } }),
    svc('ctl', { ns: 'ingress', created: '2025-01-03T00:00:00Z', ports: [tcp(80, 32080), tcp(443, 32443)], annotations: { 'kind-tunnel.dev/ingress-class': 'nginx' }, spec: { externalTrafficPolicy: 'Local', healthCheckNodePort: 32000 } }),
    svc('db', { ns: 'data', created: '2025-01-03T00:00:00Z', ports: [tcp(5432, 30432)], spec: { loadBalancerIP: '127.240.0.50' } }),
    svc('gone', { created: '2025-01-04T00:00:00Z', deleting: true }),
    svc('foreign', { loadBalancerClass: 'other.example/lb' }),
  ],
  ingresses: [ingress('i1', 'default', 'nginx', ['app.test', 'shared.test']), ingress('i2', 'team', 'nginx', ['*.team.test'])],
  ingressClasses: [ingressClass('nginx')],
}
const opts: RoutingOptions = { mode: 'both', ipPool: '127.240.0.0/24', dialer: 'relay:kind', version: 7 }

t.test('the same observed state twice gives deep-equal results', async (t) => {
  const a = computeRoutes(observed, opts)
  const b = computeRoutes(observed, opts)
  t.same(b, a)
  t.equal(JSON.stringify(b.table), JSON.stringify(a.table), 'identical, key order included')
  t.equal(a.table.version, 7)
  // Feeding the allocations back changes nothing either.
  const c = computeRoutes({ ...observed, allocations: a.allocations }, opts)
  t.equal(JSON.stringify(c), JSON.stringify(a))
})

t.test('input order never matters (property)', async (t) => {
  const reference = JSON.stringify(computeRoutes(observed, opts))
  fc.assert(fc.property(
    fc.shuffledSubarray([...observed.services], { minLength: observed.services.length }),
    fc.shuffledSubarray([...observed.nodes], { minLength: observed.nodes.length }),
    fc.shuffledSubarray([...(observed.ingresses ?? [])], { minLength: 2 }),
    (services, nodes, ingresses) => {
      return JSON.stringify(computeRoutes({ ...observed, services, nodes, ingresses }, opts)) === reference
    },
  ), { numRuns: 200 })
  t.pass('200 permutations gave the same result')
})

t.test('the input is not mutated', async (t) => {
  const before = JSON.stringify(observed)
  computeRoutes(observed, opts)
  t.equal(JSON.stringify(observed), before)
})

t.test('listeners are unique and sorted; upstream ids are consistent across listeners', async (t) => {
  const { table } = computeRoutes(observed, opts)
  const keys = table.listeners.map((l) => `${l.host}:${l.port}${l.protocol === 'udp' ? '/udp' : ''}`)
  t.equal(new Set(keys).size, keys.length)
  const byId = new Map<string, string>()
  for (const l of table.listeners) {
    for (const u of [l.default, ...l.routes.map((r) => r.upstream)]) {
      if (u === undefined) continue
      const s = JSON.stringify(u)
      t.equal(byId.get(u.id) ?? s, s, u.id)
      byId.set(u.id, s)
      t.equal(u.dialer, 'relay:kind')
    }
  }
  t.same([...byId.keys()].sort(), [
    'kind/data/db:5432', 'kind/default/web:443', 'kind/default/web:80',
    'kind/ingress/ctl:443', 'kind/ingress/ctl:80', 'kind/prod/api:443', 'kind/prod/api:53/udp', 'kind/prod/api:9000',
  ])
})
