import t from 'tap'
import { computeRoutes } from '../../src/routing/compute.js'
import { svc, tcp, KIND_NODES } from './compute-fixtures.js'

const opts = { mode: 'ip', ipPool: '127.240.0.0/24' } as const

t.test('each Service gets one IP and one plain L4 listener per TCP port', async (t) => {
  const r = computeRoutes({
    cluster: 'kind',
    nodes: KIND_NODES,
    services: [
      svc('web', { created: '2025-01-01T00:00:00Z', ports: [tcp(80, 30080, { name: 'http' }), tcp(443, 30443, { name: 'https' })] }),
      svc('db', { ns: 'data', created: '2025-01-02T00:00:00Z', ports: [tcp(5432, 30432)] }),
    ],
  }, opts)
  t.same(r.table.listeners.map((l) => [l.host, l.port, l.routes.length, l.default?.id, l.owner]), [
    ['127.240.0.1', 80, 0, 'kind/default/web:80', 'default/web'],
    ['127.240.0.1', 443, 0, 'kind/default/web:443', 'default/web'],
    ['127.240.0.2', 5432, 0, 'kind/data/db:5432', 'data/db'],
  ])
  t.same([...r.allocations], [['data/db', '127.240.0.2'], ['default/web', '127.240.0.1']])
  const web = r.services.find((p) => p.key === 'default/web')
  t.equal(web?.ip, '127.240.0.1')
  t.equal(web?.hostname, undefined)
  t.same(web?.ingress, [{ ip: '127.240.0.1', ipMode: 'Proxy', ports: [{ port: 80, protocol: 'TCP' }, { port: 443, protocol: 'TCP' }] }])
  t.same(web?.ports.map((p) => p.listeners), [['127.240.0.1:80'], ['127.240.0.1:443']])
})

t.test('allocations fed back keep every Service on its IP when an older one appears', async (t) => {
  const first = computeRoutes({ cluster: 'kind', nodes: KIND_NODES, services: [svc('b', { created: '2025-01-02T00:00:00Z' })] }, opts)
  t.equal(first.allocations.get('default/b'), '127.240.0.1')
  const second = computeRoutes({
    cluster: 'kind',
    nodes: KIND_NODES,
    allocations: first.allocations,
    services: [svc('b', { created: '2025-01-02T00:00:00Z' }), svc('a', { created: '2025-01-01T00:00:00Z' })],
  }, opts)
  t.equal(second.allocations.get('default/b'), '127.240.0.1')
  t.equal(second.allocations.get('default/a'), '127.240.0.2')
})

t.test('pool exhaustion fails the Service with a failed event', async (t) => {
  const r = computeRoutes({
    cluster: 'kind',
    nodes: KIND_NODES,
    services: [svc('a', { created: '2025-01-01T00:00:00Z' }), svc('b', { created: '2025-01-02T00:00:00Z' })],
  }, { mode: 'ip', ipPool: '10.0.0.8/32' })
  const b = r.services.find((p) => p.key === 'default/b')
  t.equal(b?.action, 'failed')
  t.equal(b?.reason, 'IPPoolExhausted')
  t.same(b?.ingress, [])
  t.ok(b?.findings.some((e) => e.kind === 'failed' && e.message.startsWith('KT_ERR_IP_POOL_EXHAUSTED') && e.reason === 'IPPoolExhausted'))
  t.same(r.table.listeners.map((l) => l.owner), ['default/a'])
})

t.test('the hostname-mode listen address is never allocated', async (t) => {
  const r = computeRoutes({ cluster: 'kind', nodes: KIND_NODES, services: [svc('a')] }, { mode: 'both', ipPool: '127.0.0.0/8' })
  t.equal(r.services[0]?.ip, '127.0.0.2')
})

t.test('loadBalancerSourceRanges become the listener sourceRanges, normalised', async (t) => {
  const s = svc('web', { spec: { loadBalancerSourceRanges: ['10.1.2.3/8', '127.0.0.0/8', '10.0.0.0/8', 'FD00::/8'] } })
  const r = computeRoutes({ cluster: 'kind', nodes: KIND_NODES, services: [s] }, opts)
  t.same(r.table.listeners[0]?.sourceRanges, ['10.0.0.0/8', '127.0.0.0/8', 'fd00::/8'])
})

t.test('the legacy source-ranges annotation is used when the field is empty', async (t) => {
  const s = svc('web', { annotations: { 'service.beta.kubernetes.io/load-balancer-source-ranges': '192.168.0.0/16, 127.0.0.1/32' } })
  const r = computeRoutes({ cluster: 'kind', nodes: KIND_NODES, services: [s] }, opts)
  t.same(r.table.listeners[0]?.sourceRanges, ['127.0.0.1/32', '192.168.0.0/16'])
})

t.test('an invalid source range fails the Service: no route, a failed event', async (t) => {
  for (const bad of ['10.0.0.0', '10.0.0.0/33', 'everyone', '1.2.3.4/8;id']) {
    const s = svc('web', { spec: { loadBalancerSourceRanges: ['10.0.0.0/8', bad] } })
    const r = computeRoutes({ cluster: 'kind', nodes: KIND_NODES, services: [s, svc('ok', { created: '2025-02-01T00:00:00Z' })] }, opts)
    const web = r.services.find((p) => p.key === 'default/web')
    t.equal(web?.action, 'failed', bad)
    t.equal(web?.reason, 'InvalidSourceRange')
    t.ok(web?.findings.some((e) => e.kind === 'failed' && e.reason === 'InvalidSourceRange'))
    t.same(web?.ingress, [])
    t.ok(web?.ports.every((p) => p.status === 'unsupported' && p.listeners.length === 0))
    t.same(r.table.listeners.map((l) => l.owner), ['default/ok'], 'other Services are unaffected')
    t.equal(r.allocations.get('default/web'), '127.240.0.1', 'the failed Service keeps its address for when it is fixed')
  }
})

t.test('a requested IP that is taken is a warning, not a failure', async (t) => {
  const r = computeRoutes({
    cluster: 'kind',
    nodes: KIND_NODES,
    services: [
      svc('a', { created: '2025-01-01T00:00:00Z', spec: { loadBalancerIP: '127.240.0.9' } }),
      svc('b', { created: '2025-01-02T00:00:00Z', annotations: { 'kind-tunnel.dev/ip': '127.240.0.9' } }),
    ],
  }, opts)
  const b = r.services.find((p) => p.key === 'default/b')
  t.equal(r.services.find((p) => p.key === 'default/a')?.ip, '127.240.0.9')
  t.equal(b?.ip, '127.240.0.1')
  t.equal(b?.action, 'serve')
  t.ok(b?.findings.some((e) => e.reason === 'RequestedIPUnavailable'))
})

t.test('IPv6 pools give IPv6 listeners', async (t) => {
  const r = computeRoutes({ cluster: 'kind', nodes: KIND_NODES, services: [svc('web')] }, { mode: 'ip', ipPool: 'fd00:4b::/64' })
  t.same(r.table.listeners.map((l) => [l.host, l.port]), [['fd00:4b::1', 80]])
})

t.test('bad options are refused with codes', async (t) => {
  const o = { cluster: 'kind', nodes: [], services: [] }
  t.throws(() => computeRoutes(o, { ipPool: '10.0.0.1/8' }), { code: 'KT_ERR_INVALID_CIDR' })
  t.throws(() => computeRoutes(o, { listenHost: '0.0.0.0' }), { code: 'KT_ERR_WILDCARD_BIND' })
  t.throws(() => computeRoutes(o, { listenHost: 'localhost' }), { code: 'KT_ERR_INVALID_ADDRESS' })
  t.throws(() => computeRoutes(o, { httpPort: 0 }), { code: 'KT_ERR_INVALID_ARG' })
  t.throws(() => computeRoutes(o, { hostnameSuffix: 'bad suffix' }), { code: 'KT_ERR_INVALID_ARG' })
  t.throws(() => computeRoutes(o, { mode: 'dns' as 'ip' }), { code: 'KT_ERR_INVALID_ARG' })
})
