import t from 'tap'
import { allocate } from '../../src/routing/ipam.js'
import { svc } from './compute-fixtures.js'

const POOL = '10.9.0.0/29' // usable: .1 - .6

t.test('lowest free address, oldest Service first, deterministic', async (t) => {
  const services = [
    svc('b', { created: '2025-01-02T00:00:00Z' }),
    svc('a', { created: '2025-01-03T00:00:00Z' }),
    svc('c', { created: '2025-01-01T00:00:00Z' }),
  ]
  const r = allocate(services, POOL)
  t.same([...r.allocations], [['default/a', '10.9.0.3'], ['default/b', '10.9.0.2'], ['default/c', '10.9.0.1']])
  t.same(r.failures, [])
  t.same(allocate([...services].reverse(), POOL), r, 'input order does not matter')
})

t.test('an address already in status is kept across restarts', async (t) => {
  const services = [
    svc('old', { created: '2025-01-01T00:00:00Z' }),
    svc('kept', { created: '2025-01-02T00:00:00Z', ingress: [{ ip: '10.9.0.5', ipMode: 'Proxy' }] }),
  ]
  const r = allocate(services, POOL)
  t.equal(r.allocations.get('default/kept'), '10.9.0.5')
  t.equal(r.allocations.get('default/old'), '10.9.0.1')
})

t.test('previous allocation, then status; outside-pool status is ignored', async (t) => {
  const s = svc('x', { ingress: [{ ip: '172.18.0.9' }, { ip: '10.9.0.4' }] })
  t.equal(allocate([s], POOL).allocations.get('default/x'), '10.9.0.4', 'first in-pool status address')
  t.equal(allocate([s], POOL, new Map([['default/x', '10.9.0.6']])).allocations.get('default/x'), '10.9.0.6', 'previous wins over status')
  t.equal(allocate([s], POOL, new Map([['default/x', '10.9.0.7']])).allocations.get('default/x'), '10.9.0.4', 'a broadcast address from previous is not reused')
})

t.test('explicit requests: spec.loadBalancerIP, then the annotation', async (t) => {
  const bySpec = svc('s', { spec: { loadBalancerIP: '10.9.0.6' }, annotations: { 'kind-tunnel.dev/ip': '10.9.0.5' } })
  t.equal(allocate([bySpec], POOL).allocations.get('default/s'), '10.9.0.6')
  const byAnn = svc('s', { annotations: { 'kind-tunnel.dev/ip': '10.9.0.5' } })
  t.equal(allocate([byAnn], POOL).allocations.get('default/s'), '10.9.0.5')
  // Editing the request moves the Service off the address it held.
  const moved = svc('s', { spec: { loadBalancerIP: '10.9.0.3' }, ingress: [{ ip: '10.9.0.1' }] })
  t.equal(allocate([moved], POOL).allocations.get('default/s'), '10.9.0.3')
})

t.test('a request for an address another Service holds falls back, with a warning', async (t) => {
  const holder = svc('holder', { created: '2025-02-01T00:00:00Z', ingress: [{ ip: '10.9.0.1' }] })
  // Older, so it is processed first: it still must not take a held address.
  const greedy = svc('greedy', { created: '2025-01-01T00:00:00Z', spec: { loadBalancerIP: '10.9.0.1' } })
  const r = allocate([holder, greedy], POOL)
  t.equal(r.allocations.get('default/holder'), '10.9.0.1')
  t.equal(r.allocations.get('default/greedy'), '10.9.0.2')
  t.same(r.warnings.map((w) => [w.key, w.reason]), [['default/greedy', 'RequestedIPTaken']])
})

t.test('two new Services requesting the same address: the older gets it', async (t) => {
  const a = svc('a', { created: '2025-01-02T00:00:00Z', spec: { loadBalancerIP: '10.9.0.4' } })
  const b = svc('b', { created: '2025-01-01T00:00:00Z', spec: { loadBalancerIP: '10.9.0.4' } })
  const r = allocate([a, b], POOL)
  t.equal(r.allocations.get('default/b'), '10.9.0.4')
  t.equal(r.allocations.get('default/a'), '10.9.0.1')
})

t.test('two Services claiming one status address: the older keeps it', async (t) => {
  const a = svc('a', { created: '2025-01-02T00:00:00Z', ingress: [{ ip: '10.9.0.3' }] })
  const b = svc('b', { created: '2025-01-01T00:00:00Z', ingress: [{ ip: '10.9.0.3' }] })
  const r = allocate([a, b], POOL)
  t.equal(r.allocations.get('default/b'), '10.9.0.3')
  t.equal(r.allocations.get('default/a'), '10.9.0.1')
})

t.test('requests outside the pool or malformed are warned about', async (t) => {
  const out = svc('out', { spec: { loadBalancerIP: '192.168.1.1' } })
  const edge = svc('edge', { spec: { loadBalancerIP: '10.9.0.0' } })
  const junk = svc('junk', { annotations: { 'kind-tunnel.dev/ip': '10.9.0.2;id' } })
  const r = allocate([out, edge, junk], POOL)
  t.same(r.warnings.map((w) => [w.key, w.reason]), [
    ['default/edge', 'RequestedIPOutsidePool'],
    ['default/junk', 'RequestedIPInvalid'],
    ['default/out', 'RequestedIPOutsidePool'],
  ])
  t.equal(r.allocations.size, 3)
})

t.test('exhaustion fails with KT_ERR_IP_POOL_EXHAUSTED; deletion releases', async (t) => {
  const many = Array.from({ length: 8 }, (_, i) => svc(`s${i}`, { created: `2025-01-0${i + 1}T00:00:00Z` }))
  const r = allocate(many, POOL)
  t.equal(r.allocations.size, 6)
  t.same(r.failures.map((f) => [f.key, f.code]), [['default/s6', 'KT_ERR_IP_POOL_EXHAUSTED'], ['default/s7', 'KT_ERR_IP_POOL_EXHAUSTED']])
  // s2 is deleted (no longer passed in): its address goes to the next one.
  const after = allocate(many.filter((_, i) => i !== 2), POOL, r.allocations)
  t.equal(after.allocations.get('default/s6'), r.allocations.get('default/s2'))
  t.equal(after.failures.length, 1)
  for (const [k, ip] of r.allocations) if (k !== 'default/s2') t.equal(after.allocations.get(k), ip, `${k} did not move`)
})

t.test('reserved addresses are never handed out; /32 and /31 pools', async (t) => {
  const r = allocate([svc('a'), svc('b', { created: '2025-01-02T00:00:00Z' })], '127.0.0.0/8', new Map(), { reserved: ['127.0.0.1'] })
  t.same([...r.allocations.values()], ['127.0.0.2', '127.0.0.3'])
  t.same([...allocate([svc('a')], '10.1.1.1/32').allocations.values()], ['10.1.1.1'])
  t.same([...allocate([svc('a'), svc('b')], '10.1.1.0/31').allocations.values()], ['10.1.1.0', '10.1.1.1'])
})

t.test('IPv6 pools', async (t) => {
  const r = allocate([svc('a'), svc('b', { created: '2025-01-02T00:00:00Z', ingress: [{ ip: 'FD00:0::0:9' }] })], 'fd00::/64')
  t.same([...r.allocations], [['default/a', 'fd00::1'], ['default/b', 'fd00::9']])
})

t.test('a pool with host bits set is refused', async (t) => {
  t.throws(() => allocate([], '10.9.0.1/29'), { code: 'KT_ERR_INVALID_CIDR' })
})

t.test('large pools with many holders stay cheap', async (t) => {
  const many = Array.from({ length: 2000 }, (_, i) => svc(`s${String(i).padStart(4, '0')}`))
  const start = process.hrtime.bigint()
  const r = allocate(many, 'fd00::/64')
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  t.equal(r.allocations.size, 2000)
  t.equal(new Set(r.allocations.values()).size, 2000, 'all distinct')
  t.ok(ms < 5000, `took ${ms.toFixed(0)} ms`)
})
