// Informers survive an API server restart, a watch cut mid-stream and a
// 410 Gone: routes converge again, and the 410 leads to a re-list.

import t from 'tap'
import { httpGet, ingressOf, lbService, sleep, startHarness, waitFor } from './fixtures/harness.js'

t.test('the API server restarts: informers restart with backoff and routes converge', async (t) => {
  const h = await startHarness(t)
  h.api.create(lbService('before', [{ port: 18080 }]))
  await waitFor(() => ingressOf(h.api, 'before').length > 0, 'status of before')
  const restartsBefore = h.ctl.snapshot().informers.find((i) => i.resource === 'services')?.restarts ?? 0

  await h.api.restart({ downMs: 400 })
  // Changes made right after the restart reach the controller through a re-list.
  h.api.create(lbService('after', [{ port: 18080 }]))
  h.api.delete('services', 'before')
  await h.serveNodePorts('after')
  const ip = await waitFor(() => ingressOf(h.api, 'after')[0]?.ip, 'status of after', 5000)
  t.match(await httpGet(ip, 18080), /^node=/, 'the new Service is served')
  await waitFor(() => h.api.tryGet('services', 'before') === undefined, 'before to be cleaned up', 5000)
  const inf = h.ctl.snapshot().informers.find((i) => i.resource === 'services')
  t.ok((inf?.restarts ?? 0) > restartsBefore, `the services informer restarted (${inf?.restarts ?? 0})`)
  t.ok((inf?.lists ?? 0) >= 2, 're-listed')
  await waitFor(() => h.ctl.snapshot().informers.every((i) => i.watching), 'every informer to watch again', 5000)
  t.pass('every informer watches again')
})

t.test('a watch cut mid-stream is restarted and nothing is missed', async (t) => {
  const h = await startHarness(t)
  h.api.create(lbService('a', [{ port: 18080 }]))
  await waitFor(() => ingressOf(h.api, 'a').length > 0, 'status of a')
  const n = h.api.cutWatches({ mode: 'destroy' })
  t.ok(n >= 3, `${n} watches reset`)
  h.api.create(lbService('b', [{ port: 18080 }]))
  await h.serveNodePorts('b')
  const ip = await waitFor(() => ingressOf(h.api, 'b')[0]?.ip, 'status of b', 5000)
  t.match(await httpGet(ip, 18080), /^node=/)
  const inf = h.ctl.snapshot().informers.find((i) => i.resource === 'services')
  t.ok((inf?.restarts ?? 0) >= 1, 'restarted')
  t.equal(inf?.lastError?.code, 'KT_ERR_KUBE_API', 'the cut is recorded with its code')
})

t.test('a 410 Gone leads to a re-list', async (t) => {
  // Watches that end cleanly re-watch from their resourceVersion (minWatchMs
  // lowered so a young watch counts as a normal end).
  const h = await startHarness(t, { controller: { informers: { minWatchMs: 1 } } })
  h.api.create(lbService('a', [{ port: 18080 }]))
  await waitFor(() => ingressOf(h.api, 'a').length > 0, 'status of a')
  await sleep(100)
  const before = h.ctl.snapshot().informers.find((i) => i.resource === 'services')
  // Move the store past the informer's resourceVersion (a write it does not
  // watch), drop the history, and end the watch: it resumes from an expired RV.
  h.api.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'bump' } })
  h.api.compact()
  h.api.cutWatches({ mode: 'end', resource: 'services' })
  await waitFor(() => (h.ctl.snapshot().informers.find((i) => i.resource === 'services')?.gone ?? 0) > (before?.gone ?? 0), 'the 410', 3000)
  h.api.create(lbService('b', [{ port: 18080 }], { namespace: 'bump' }))
  await h.serveNodePorts('b', 'bump')
  const ip = await waitFor(() => ingressOf(h.api, 'b', 'bump')[0]?.ip, 'status of bump/b', 5000)
  t.match(await httpGet(ip, 18080), /^node=/, 'served after the re-list')
  const after = h.ctl.snapshot().informers.find((i) => i.resource === 'services')
  t.ok((after?.gone ?? 0) > (before?.gone ?? 0), `410 seen (${after?.gone ?? 0})`)
  t.ok((after?.lists ?? 0) > (before?.lists ?? 0), `re-listed (${before?.lists ?? 0} → ${after?.lists ?? 0})`)
})
