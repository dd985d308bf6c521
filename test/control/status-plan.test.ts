// Status and Event planning (control/status-plan.ts) on computeRoutes' plans:
// whether the status must be written, and the Events that go with the write,
// next to the plan's own (level-triggered) findings.

import t from 'tap'
import { findingEvent, planStatus } from '../../src/control/status-plan.js'
import { computeRoutes } from '../../src/routing/compute.js'
import type { KubeLoadBalancerIngress } from '../../src/routing/kube.js'
import { svc, tcp, KIND_NODES } from '../routing/compute-fixtures.js'

const opts = { mode: 'ip', ipPool: '127.240.0.0/24' } as const
const plan = (ingress?: KubeLoadBalancerIngress[], extra: Parameters<typeof svc>[1] = {}) => {
  const s = svc('web', { ...(ingress !== undefined ? { ingress } : {}), ...extra })
  const p = computeRoutes({ cluster: 'kind', nodes: KIND_NODES, services: [s] }, opts).services[0]
  if (p === undefined) return undefined
  const status = planStatus(s, p)
  return { ...p, statusChanged: status.changed, events: [...p.findings.map(findingEvent), ...status.events] }
}

t.test('routing findings become Warning Events here, not in routing/', async (t) => {
  t.same(findingEvent({ kind: 'failed', reason: 'IPPoolExhausted', message: 'm' }), { type: 'Warning', kind: 'failed', reason: 'IPPoolExhausted', message: 'm' })
})

t.test('no status yet: assigned', async (t) => {
  const p = plan()
  t.equal(p?.statusChanged, true)
  t.same(p?.events, [{ type: 'Normal', kind: 'assigned', reason: 'EnsuredLoadBalancer', message: 'assigned 127.240.0.1' }])
})

t.test('status already as desired (any order of ports): nothing to do, no events', async (t) => {
  const p = plan([{ ip: '127.240.0.1', ipMode: 'Proxy', ports: [{ port: 443, protocol: 'TCP' }, { port: 80, protocol: 'TCP' }] }], { ports: [tcp(80, 30080), tcp(443, 30443)] })
  t.equal(p?.statusChanged, false)
  t.same(p?.events, [])
})

t.test('status differs: updated', async (t) => {
  const p = plan([{ ip: '172.18.0.5', ipMode: 'Proxy', ports: [{ port: 80, protocol: 'TCP' }] }])
  t.equal(p?.statusChanged, true)
  t.same(p?.events.map((e) => [e.kind, e.reason]), [['updated', 'UpdatedLoadBalancer']])
  t.equal(p?.ip, '127.240.0.1', 'an address outside the pool is not kept')
})

t.test('a failed Service with a stale status: cleared, updated + failed events', async (t) => {
  const p = plan([{ ip: '127.240.0.1', ipMode: 'Proxy', ports: [{ port: 80, protocol: 'TCP' }] }], { spec: { loadBalancerSourceRanges: ['nope'] } })
  t.equal(p?.action, 'failed')
  t.same(p?.ingress, [])
  t.equal(p?.statusChanged, true)
  t.same(p?.events.map((e) => [e.kind, e.reason]).sort(), [['failed', 'InvalidSourceRange'], ['updated', 'UpdatedLoadBalancer']])
})

t.test('unsupported-port events come with the status change only', async (t) => {
  const ports = [tcp(80, 30080), { port: 9899, protocol: 'SCTP', nodePort: 30053 }]
  const first = plan(undefined, { ports })
  t.same(first?.events.map((e) => e.kind), ['assigned', 'unsupported'])
  const steady = plan(first?.ingress as KubeLoadBalancerIngress[], { ports })
  t.equal(steady?.statusChanged, false)
  t.same(steady?.events, [])
})

t.test('an API server that drops ipMode does not cause a patch loop', async (t) => {
  const p = plan([{ ip: '127.240.0.1', ports: [{ port: 80, protocol: 'TCP' }] }])
  t.equal(p?.statusChanged, false)
  t.same(p?.events, [])
})

t.test('a cleanup plan: the status is to be cleared when there is one, with no events of its own', async (t) => {
  const s = svc('gone', { type: 'ClusterIP', finalizers: ['kind-tunnel.dev/load-balancer-cleanup'], ingress: [{ ip: '127.240.0.3' }] })
  const p = computeRoutes({ cluster: 'kind', nodes: KIND_NODES, services: [s] }, opts).services[0]
  t.equal(p?.action, 'cleanup')
  t.same(planStatus(s, p!), { changed: true, events: [] })
  const bare = svc('gone', { type: 'ClusterIP', finalizers: ['kind-tunnel.dev/load-balancer-cleanup'] })
  t.same(planStatus(bare, computeRoutes({ cluster: 'kind', nodes: KIND_NODES, services: [bare] }, opts).services[0]!), { changed: false, events: [] })
})
