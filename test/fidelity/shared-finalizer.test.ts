// The shared finalizer (service.kubernetes.io/load-balancer-cleanup) against a
// faithful API server: a type change drops spec.loadBalancerClass and clears
// status.loadBalancer (kube-apiserver dropTypeDependentFields), so the class
// and the status can no longer say whose a Service was. kind-tunnel keeps its
// own finalizer for that, removes the shared one only where it wrote the
// status, never fights another controller over a Service, and treats a 422
// from a status patch that raced a type change as the type change it is.
import t from 'tap'
import { FINALIZER, OWN_FINALIZER } from '../../src/routing/compute.js'
import { finalizersOf, ingressOf, lbService, startHarness, waitFor } from '../control/fixtures/harness.js'

type Ev = { reason: string, type: string, involvedObject: { name: string } }
const eventsOf = (h: { api: { list: (r: string, ns: string) => unknown[] } }, name: string): Ev[] =>
  (h.api.list('events', 'default') as Ev[]).filter((e) => e.involvedObject.name === name)

/** Create a Service and wait until kind-tunnel served it: proof that every earlier change was reconciled. */
async function sentinel (h: Awaited<ReturnType<typeof startHarness>>, name: string): Promise<void> {
  h.api.create(lbService(name, [{ port: 18090 }]))
  await h.serveNodePorts(name)
  await waitFor(() => ingressOf(h.api, name)[0]?.ip, `the sentinel ${name} to be served`)
}

t.test('another controller\'s Service whose type changes keeps its shared finalizer', async (t) => {
  const h = await startHarness(t)
  h.api.create({ ...lbService('theirs', [{ port: 18080 }], { spec: { loadBalancerClass: 'example.com/other' } }), metadata: { name: 'theirs', namespace: 'default', finalizers: [FINALIZER] } })
  h.api.patch('services', 'theirs', { status: { loadBalancer: { ingress: [{ ip: '172.18.0.9', ipMode: 'Proxy' }] } } }, { subresource: 'status' })
  h.api.patch('services', 'theirs', { spec: { type: 'ClusterIP', ports: [{ name: 'p18080', port: 18080, protocol: 'TCP', targetPort: 8080 }] } })
  const now = h.api.get('services', 'theirs') as unknown as { spec: { loadBalancerClass?: string } }
  t.equal(now.spec.loadBalancerClass, undefined, 'the API server dropped the class')
  t.same(ingressOf(h.api, 'theirs'), [], 'and cleared the status')
  await sentinel(h, 'later')
  t.same(finalizersOf(h.api, 'theirs'), [FINALIZER], 'the other controller\'s finalizer is still there')
  t.equal(eventsOf(h, 'theirs').length, 0, 'kind-tunnel said nothing about it')
})

t.test('finalizers: class-less Services get both, classed ones only kind-tunnel\'s own', async (t) => {
  const h = await startHarness(t)
  h.api.create(lbService('plain', [{ port: 18080 }]))
  h.api.create(lbService('classed', [{ port: 18081 }], { spec: { loadBalancerClass: 'kind-tunnel.dev/lb' } }))
  await h.serveNodePorts('plain')
  await h.serveNodePorts('classed')
  await waitFor(() => ingressOf(h.api, 'plain')[0]?.ip !== undefined && ingressOf(h.api, 'classed')[0]?.ip !== undefined, 'both served')
  t.same(finalizersOf(h.api, 'plain'), [FINALIZER, OWN_FINALIZER])
  t.same(finalizersOf(h.api, 'classed'), [OWN_FINALIZER])

  // A type change of a classed one: class and status are gone on the server; our finalizer says it was ours.
  h.api.patch('services', 'classed', { spec: { type: 'ClusterIP', ports: [{ name: 'p18081', port: 18081, protocol: 'TCP', targetPort: 8080 }] } })
  await waitFor(() => (finalizersOf(h.api, 'classed') ?? []).length === 0, 'our finalizer to go')
  await waitFor(() => eventsOf(h, 'classed').some((e) => e.reason === 'DeletedLoadBalancer'), 'DeletedLoadBalancer')
})

t.test('a class-less Service another controller already serves is left alone, with a warning', async (t) => {
  const h = await startHarness(t)
  h.api.create({ ...lbService('taken', [{ port: 18080 }]), metadata: { name: 'taken', namespace: 'default', finalizers: [FINALIZER] } })
  h.api.patch('services', 'taken', { status: { loadBalancer: { ingress: [{ ip: '172.18.0.9', ipMode: 'Proxy' }] } } }, { subresource: 'status' })
  await h.serveNodePorts('taken')
  await waitFor(() => eventsOf(h, 'taken').some((e) => e.reason === 'LoadBalancerConflict' && e.type === 'Warning'), 'a LoadBalancerConflict warning')
  await sentinel(h, 'later')
  t.same(ingressOf(h.api, 'taken').map((i) => i.ip), ['172.18.0.9'], 'its status is not overwritten')
  t.same(finalizersOf(h.api, 'taken'), [FINALIZER], 'no finalizer of ours added')
  const snap = h.ctl.snapshot().services.find((s) => s.key === 'default/taken')
  t.equal(snap?.lastError?.code, 'KT_ERR_LB_CONFLICT', 'status says why')

  // Deleting it: the other controller's finalizer is not ours to remove.
  h.api.delete('services', 'taken')
  await sentinel(h, 'later2')
  t.same(finalizersOf(h.api, 'taken'), [FINALIZER], 'still held by the other controller')
})

t.test('a status patch that races a type change (422) is no SyncLoadBalancerFailed', async (t) => {
  const h = await startHarness(t)
  h.api.create(lbService('web', [{ port: 18080 }]))
  await h.serveNodePorts('web')
  await waitFor(() => ingressOf(h.api, 'web')[0]?.ip, 'web served')
  // The next status patch finds the Service already turned into a ClusterIP one.
  let raced = false
  h.api.beforeRequest({ verb: 'patch', resource: 'services', subresource: 'status', name: 'web' }, () => {
    raced = true
    h.api.patch('services', 'web', { spec: { type: 'ClusterIP', ports: [{ name: 'p18080', port: 18080, protocol: 'TCP', targetPort: 8080 }, { name: 'p18082', port: 18082, protocol: 'TCP', targetPort: 8080 }] } })
  })
  const cur = h.api.get('services', 'web') as unknown as { spec: { ports: Array<Record<string, unknown>> } }
  h.api.patch('services', 'web', { spec: { ports: [...cur.spec.ports, { name: 'p18082', port: 18082, protocol: 'TCP', targetPort: 8080 }] } })
  await waitFor(() => raced, 'the raced status patch')
  await waitFor(() => (finalizersOf(h.api, 'web') ?? []).length === 0, 'the cleanup after the type change')
  await waitFor(() => eventsOf(h, 'web').some((e) => e.reason === 'DeletedLoadBalancer'), 'DeletedLoadBalancer')
  t.ok(h.api.requestCount({ verb: 'patch', resource: 'services', subresource: 'status', code: 422 }) >= 1, 'the race did produce a 422')
  t.notOk(eventsOf(h, 'web').some((e) => e.reason === 'SyncLoadBalancerFailed'), 'no spurious SyncLoadBalancerFailed')
})
