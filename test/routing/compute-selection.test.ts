import t from 'tap'
import { computeRoutes, FINALIZER, OWN_FINALIZER } from '../../src/routing/compute.js'
import { svc, KIND_NODES } from './compute-fixtures.js'

const run = (services: Parameters<typeof computeRoutes>[0]['services']) =>
  computeRoutes({ cluster: 'kind', services, nodes: KIND_NODES }, { mode: 'ip', ipPool: '127.240.0.0/24' })

t.test('only LoadBalancer Services without a class, or with ours, are handled', async (t) => {
  const r = run([
    svc('plain'),
    svc('ours', { loadBalancerClass: 'kind-tunnel.dev/lb' }),
    svc('foreign', { loadBalancerClass: 'example.com/other' }),
    svc('cluster-ip', { type: 'ClusterIP' }),
    svc('node-port', { type: 'NodePort' }),
    svc('empty-class', { loadBalancerClass: '' }),
  ])
  t.same(r.services.map((p) => [p.key, p.action]), [
    ['default/empty-class', 'serve'],
    ['default/ours', 'serve'],
    ['default/plain', 'serve'],
  ])
  t.equal(r.table.listeners.length, 3)
  t.notOk(r.table.listeners.some((l) => l.owner === 'default/foreign' || l.owner === 'default/cluster-ip'))
})

t.test('a Service being deleted has no routes and a cleanup plan that names its IP', async (t) => {
  const live = run([svc('web')])
  const ip = live.services[0]?.ip
  t.equal(ip, '127.240.0.1')
  const r = computeRoutes(
    { cluster: 'kind', services: [svc('web', { deleting: true, finalizers: [FINALIZER], ingress: [{ ip: '127.240.0.1', ipMode: 'Proxy' }] })], nodes: KIND_NODES, allocations: live.allocations },
    { mode: 'ip', ipPool: '127.240.0.0/24' },
  )
  t.same(r.table.listeners, [])
  t.equal(r.allocations.size, 0, 'the address is released')
  t.equal(r.services.length, 1)
  const p = r.services[0]
  t.equal(p?.action, 'cleanup')
  t.equal(p?.reason, 'Deleting')
  t.equal(p?.ip, '127.240.0.1')
  t.same(p?.ingress, [])
  t.same(p?.findings, [])
})

t.test('the cleanup plan finds the IP in status after a restart', async (t) => {
  const r = run([svc('web', { deleting: true, ingress: [{ ip: '10.0.0.1' }, { ip: '127.240.0.7' }] })])
  t.equal(r.services[0]?.ip, '127.240.0.7', 'only an address of our pool is released')
})

t.test('the finalizer is the upstream service controller\'s', async (t) => {
  t.equal(FINALIZER, 'service.kubernetes.io/load-balancer-cleanup')
})

t.test('a Service that stops asking for us is cleaned up only if it carries our finalizer, or the shared one on a status we wrote', async (t) => {
  const r = run([
    svc('went-cluster-ip', { type: 'ClusterIP', finalizers: [FINALIZER], ingress: [{ ip: '127.240.0.3' }] }),
    // The real API server dropped the class and cleared the status on the type change: our finalizer says it was ours.
    svc('went-ours-class', { type: 'ClusterIP', finalizers: [OWN_FINALIZER] }),
    svc('foreign-with-finalizer', { loadBalancerClass: 'example.com/other', finalizers: [FINALIZER] }),
    // Was another controller's (class dropped, status cleared by the type change): its shared finalizer is not ours to take.
    svc('went-cluster-ip-foreign', { type: 'ClusterIP', finalizers: [FINALIZER] }),
    svc('foreign-status', { type: 'ClusterIP', finalizers: [FINALIZER], ingress: [{ ip: '172.18.0.9' }] }),
    svc('never-ours', { type: 'ClusterIP', finalizers: ['example.com/other-cleanup'] }),
  ])
  t.same(r.services.map((p) => [p.key, p.action, p.reason]), [
    ['default/went-cluster-ip', 'cleanup', 'NotHandled'],
    ['default/went-ours-class', 'cleanup', 'NotHandled'],
  ])
  t.same(r.services[0]?.ingress, [], 'the stale status is to be cleared (control/status-plan.ts compares it)')
})

t.test('objects without a name are skipped; a duplicate key is served once', async (t) => {
  const r = run([{ spec: { type: 'LoadBalancer' } }, svc('dup'), svc('dup')])
  t.same(r.services.map((p) => p.key), ['default/dup'])
})
