// The per-Service way to ask for warm backend connections (issue 12, bug 1):
// `kind-tunnel.dev/backend-pool: "N"` sets the pool of that Service's
// upstreams only; without it there is none (auto is 0). A bad value is a
// Warning event and no pool, never a failed Service.
import t from 'tap'
import { computeRoutes, ANNOTATION_BACKEND_POOL, parseBackendPool } from '../../src/routing/compute.js'
import { effectivePoolSize } from '../../src/dataplane/pool.js'
import { svc, tcp, KIND_NODES } from '../routing/compute-fixtures.js'

const opts = { mode: 'ip' as const, ipPool: '127.240.0.0/24', dialer: 'relay:kind' }

t.test('the annotation sets the pool of that Service only', async (t) => {
  const pooled = svc('db', { annotations: { [ANNOTATION_BACKEND_POOL]: '3' }, ports: [tcp(6379, 30379)] })
  const plain = svc('perf', { ports: [tcp(5201, 30201)] })
  const r = computeRoutes({ cluster: 'kind', services: [pooled, plain], nodes: KIND_NODES }, opts)
  const byId = new Map(r.table.listeners.map((l) => [l.default?.id, l.default]))
  t.equal(byId.get('kind/default/db:6379')?.poolSize, 3)
  t.equal(byId.get('kind/default/perf:5201')?.poolSize, undefined, 'no annotation: nothing set, auto applies')
  t.equal(effectivePoolSize(undefined, 'auto', 'relay:kind'), 0, 'and auto pools nothing')
  t.equal(effectivePoolSize(3, 0, 'relay:kind'), 3, 'the annotation wins over --pool-size')
})

t.test('a bad value: a Warning event, no pool, the Service still served', async (t) => {
  for (const bad of ['-1', 'lots', '65', '1.5', '']) {
    const r = computeRoutes({ cluster: 'kind', services: [svc('db', { annotations: { [ANNOTATION_BACKEND_POOL]: bad } })], nodes: KIND_NODES }, opts)
    t.equal(r.table.listeners[0]?.default?.poolSize, undefined, JSON.stringify(bad))
    t.equal(r.services[0]?.action, 'serve')
    t.ok(r.services[0]?.findings.some((e) => e.reason === 'InvalidBackendPool' && e.message.includes(ANNOTATION_BACKEND_POOL)), 'a warning names the annotation')
  }
  t.equal(parseBackendPool(' 0 '), 0)
  t.equal(parseBackendPool('64'), 64)
  t.equal(parseBackendPool(undefined), undefined)
})
