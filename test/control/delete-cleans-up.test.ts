// Deleting a Service closes its listener, releases its IP and removes the
// finalizer (which lets the API server finish the delete). A Service deleted
// while kind-tunnel was down waits, held by the finalizer, and is cleaned up
// at the next start.

import t from 'tap'
import { FINALIZER, OWN_FINALIZER } from '../../src/routing/compute.js'
import { finalizersOf, httpGet, ingressOf, lbService, sleep, startHarness, tryConnect, waitFor, within } from './fixtures/harness.js'

t.test('deleting a Service closes its listener, releases its IP and removes its finalizer', async (t) => {
  const h = await startHarness(t)
  h.api.create(lbService('web', [{ port: 18080 }]))
  h.api.create(lbService('other', [{ port: 18080 }]))
  await h.serveNodePorts('web')
  await h.serveNodePorts('other')
  const ip = await waitFor(() => ingressOf(h.api, 'web')[0]?.ip, 'the IP of web')
  const otherIp = await waitFor(() => ingressOf(h.api, 'other')[0]?.ip, 'the IP of other')
  t.match(await httpGet(ip, 18080), /^node=/)
  t.ok(h.addresses.held.has(ip), 'the IP is held')

  const r = h.api.delete('services', 'web')
  t.equal(r.deleted, false, 'the finalizer holds the delete')
  t.same(finalizersOf(h.api, 'web'), [FINALIZER, OWN_FINALIZER])
  await waitFor(() => h.api.tryGet('services', 'web') === undefined, 'the Service to be gone', 3000)

  t.equal(await tryConnect(ip, 18080), 'ECONNREFUSED', 'the listener is closed')
  t.notOk(h.dp.snapshot().listeners.some((l) => l.key === `${ip}:18080`), 'no listener left on its address')
  t.notOk(h.addresses.held.has(ip), 'the IP is released')
  t.notOk(h.ctl.snapshot().addresses.includes(ip))
  await waitFor(() => !h.ctl.snapshot().services.some((s) => s.key === 'default/web'), 'the snapshot to forget it')
  t.match(await httpGet(otherIp, 18080), /^node=/, 'the other Service is untouched')
  t.equal(h.ctl.snapshot().services.find((s) => s.key === 'default/other')?.finalizer, true)
})

t.test('a Service deleted while kind-tunnel was down is cleaned up at the next start', async (t) => {
  const h = await startHarness(t)
  h.api.create(lbService('web', [{ port: 18080 }]))
  await h.serveNodePorts('web')
  const ip = await waitFor(() => ingressOf(h.api, 'web')[0]?.ip, 'the IP of web')
  await h.ctl.stop()
  await h.dp.apply({ version: 99, listeners: [] }) // the process is gone: so are its listeners

  h.api.delete('services', 'web')
  await sleep(300)
  const held = h.api.tryGet('services', 'web')
  t.ok(held?.metadata.deletionTimestamp !== undefined, 'the Service waits with a deletionTimestamp')
  t.same(held?.metadata.finalizers, [FINALIZER, OWN_FINALIZER], 'held by the finalizer')

  const releasesBefore = h.addresses.releases
  await h.startController()
  await within(h.ctl.synced, 5000, 'synced')
  await waitFor(() => h.api.tryGet('services', 'web') === undefined, 'the Service to be gone', 3000)
  t.ok(h.addresses.releases > releasesBefore, `its address ${ip} was released`)
  t.equal(await tryConnect(ip, 18080), 'ECONNREFUSED', 'nothing listens on it')
})

t.test('a Service that stops being a LoadBalancer gets its status and finalizer back, and its listener closes', async (t) => {
  const h = await startHarness(t)
  h.api.create(lbService('web', [{ port: 18080 }]))
  await h.serveNodePorts('web')
  const ip = await waitFor(() => ingressOf(h.api, 'web')[0]?.ip, 'the IP of web')
  const cur = h.api.get('services', 'web') as unknown as { spec: { ports: Array<Record<string, unknown>> } }
  h.api.patch('services', 'web', { spec: { type: 'ClusterIP', ports: cur.spec.ports.map(({ nodePort: _n, ...p }) => p) } })
  await waitFor(() => ingressOf(h.api, 'web').length === 0 && (finalizersOf(h.api, 'web') ?? []).length === 0, 'status and finalizer gone', 3000)
  t.ok(h.api.tryGet('services', 'web') !== undefined, 'the Service lives on')
  t.equal(await tryConnect(ip, 18080), 'ECONNREFUSED', 'its listener is closed')
  t.notOk(h.addresses.held.has(ip), 'its IP is released')
  // The API server cleared the status on the type change (as kube-apiserver does): the finalizer is what says it was ours.
  await waitFor(() => h.api.list('events', 'default').some((e) => (e as unknown as { reason: string }).reason === 'DeletedLoadBalancer'), 'a DeletedLoadBalancer event', 3000)
  t.pass('a DeletedLoadBalancer event says so')
  t.equal(h.api.requestCount({ code: 409 }), 0, 'the finalizer patch carried the RV the status patch left: no conflict')
})
