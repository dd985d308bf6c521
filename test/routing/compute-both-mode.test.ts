import t from 'tap'
import { computeRoutes } from '../../src/routing/compute.js'
import { svc, tcp, KIND_NODES } from './compute-fixtures.js'

t.test('both: the union of ip and hostname listeners, two status entries', async (t) => {
  const r = computeRoutes({
    cluster: 'kind',
    nodes: KIND_NODES,
    services: [svc('web', { ports: [tcp(80, 30080, { name: 'http' }), tcp(443, 30443, { name: 'https' })] })],
  }, { mode: 'both', ipPool: '127.240.0.0/24' })
  t.same(r.table.listeners.map((l) => `${l.host}:${l.port}=${l.default?.id}`), [
    '127.0.0.1:8080=kind/default/web:80',
    '127.0.0.1:8443=kind/default/web:443',
    '127.240.0.1:80=kind/default/web:80',
    '127.240.0.1:443=kind/default/web:443',
  ])
  const [a, b] = r.table.listeners
  t.equal(a?.default, r.table.listeners[2]?.default, 'one upstream object per Service port')
  t.same(a?.default, r.table.listeners[2]?.default)
  t.ok(b)
  const p = r.services[0]
  t.equal(p?.ip, '127.240.0.1')
  t.equal(p?.hostname, 'web.default.localhost')
  const ports = [{ port: 80, protocol: 'TCP' }, { port: 443, protocol: 'TCP' }]
  t.same(p?.ingress, [{ ip: '127.240.0.1', ipMode: 'Proxy', ports }, { hostname: 'web.default.localhost', ports }])
  t.same(p?.ports.map((x) => x.listeners), [['127.0.0.1:8080', '127.240.0.1:80'], ['127.0.0.1:8443', '127.240.0.1:443']])
})

t.test('both: an exhausted pool still serves the Service by name', async (t) => {
  const r = computeRoutes({
    cluster: 'kind',
    nodes: KIND_NODES,
    services: [svc('a', { created: '2025-01-01T00:00:00Z' }), svc('b', { created: '2025-01-02T00:00:00Z' })],
  }, { mode: 'both', ipPool: '127.240.0.9/32' })
  const b = r.services.find((p) => p.key === 'default/b')
  t.equal(b?.action, 'serve')
  t.equal(b?.ip, undefined)
  t.same(b?.ingress, [{ hostname: 'b.default.localhost', ports: [{ port: 80, protocol: 'TCP' }] }])
  t.ok(b?.findings.some((e) => e.kind === 'failed' && e.reason === 'IPPoolExhausted'))
})
