// client-node's informer (ListWatch) against the test API server: live
// events, and the 410 path that makes it re-list after compaction.

import t from 'tap'
import { CoreV1Api, KubeConfig, makeInformer, type Informer, type ObjectCache, type V1Service } from '@kubernetes/client-node'
import { startSim, svc, waitFor } from './fixtures/helpers.js'
import type { ApiServer } from '../../src/sim/apiserver.js'

interface Seen { adds: string[], updates: string[], deletes: string[], errors: number }

async function startInformer (t: { teardown: (fn: () => unknown) => void }, s: ApiServer): Promise<{ informer: Informer<V1Service> & ObjectCache<V1Service>, seen: Seen }> {
  const kc = new KubeConfig()
  kc.loadFromString(s.kubeconfig())
  const core = kc.makeApiClient(CoreV1Api)
  const informer = makeInformer<V1Service>(kc, '/api/v1/namespaces/default/services', async () => await core.listNamespacedService({ namespace: 'default' }))
  const seen: Seen = { adds: [], updates: [], deletes: [], errors: 0 }
  informer.on('add', (o) => seen.adds.push(o.metadata?.name ?? ''))
  informer.on('update', (o) => seen.updates.push(o.metadata?.name ?? ''))
  informer.on('delete', (o) => seen.deletes.push(o.metadata?.name ?? ''))
  let stopped = false
  // client-node stops on a non-410 watch error; the caller restarts it (as control/ will, with backoff).
  informer.on('error', () => {
    seen.errors++
    if (!stopped) setTimeout(() => { if (!stopped) void informer.start().catch(() => {}) }, 100)
  })
  t.teardown(async () => { stopped = true; await informer.stop() })
  await informer.start()
  await s.waitForWatches('services', 1)
  return { informer, seen }
}

t.test('informer: add, update and delete events', async (t) => {
  const s = await startSim(t)
  s.create(svc('before'))
  const { informer, seen } = await startInformer(t, s)
  t.same(seen.adds.sort(), ['before', 'kubernetes'], 'the initial list arrives as adds')

  s.create(svc('web'))
  await waitFor(() => seen.adds.includes('web'), 'add')
  s.patch('services', 'web', { status: { loadBalancer: { ingress: [{ ip: '127.0.0.60' }] } } }, { subresource: 'status' })
  await waitFor(() => seen.updates.includes('web'), 'update')
  t.equal(informer.get('web', 'default')?.status?.loadBalancer?.ingress?.[0]?.ip, '127.0.0.60')
  s.delete('services', 'web')
  await waitFor(() => seen.deletes.includes('web'), 'delete')
  t.equal(informer.get('web', 'default'), undefined)
})

t.test('informer re-lists after compact() and a destroyed watch', async (t) => {
  const s = await startSim(t)
  s.create(svc('a'))
  s.create(svc('b'))
  const { informer, seen } = await startInformer(t, s)
  const listsBefore = s.requestCount({ verb: 'list', resource: 'services' })
  t.equal(listsBefore, 1)

  // Cut the stream mid-flight, change things while no watch is open, and drop the history.
  t.equal(s.cutWatches(), 1)
  s.create(svc('c'))
  s.delete('services', 'a')
  s.compact()

  // The restarted watch resumes from its old RV, gets ERROR 410 Expired, and re-lists.
  await waitFor(() => s.requestCount({ verb: 'list', resource: 'services' }) > listsBefore, 'the informer listed again')
  await waitFor(() => seen.adds.includes('c') && seen.deletes.includes('a'), 're-list reconciled the cache: c added, a deleted')
  await waitFor(() => s.watchCount('services') === 1, 's.watchCount(\'services\') === 1')
  t.ok(seen.errors >= 1, 'the cut surfaced as an error the owner restarts from')
  t.ok(s.requests.some((r) => r.verb === 'watch' && r.code === 200), 'watches were served')
  t.same(informer.list('default').map((o) => o.metadata?.name).sort(), ['b', 'c', 'kubernetes'])

  // A clean end (server-side timeout) is not an error: the informer re-watches on its own.
  // Changes made in the same tick as the cut are unseen by the informer, and compaction drops them.
  const errors = seen.errors
  const lists = s.requestCount({ verb: 'list', resource: 'services' })
  t.equal(s.cutWatches({ mode: 'end' }), 1)
  s.create(svc('d'))
  s.compact()
  await waitFor(() => s.requestCount({ verb: 'list', resource: 'services' }) > lists, 'the 410 after a clean end also re-lists')
  await waitFor(() => seen.adds.includes('d'), 'and the re-list delivers what the watch missed')
  await waitFor(() => s.watchCount('services') === 1, 's.watchCount(\'services\') === 1')
  s.create(svc('e'))
  await waitFor(() => seen.adds.includes('e'), 'and the new watch delivers')
  t.equal(seen.errors, errors, 'without an error callback')
})

t.test('informer survives restart(): same port, same store, same resourceVersions', async (t) => {
  const s = await startSim(t)
  const { seen } = await startInformer(t, s)
  const port = s.port
  const rv = s.resourceVersion
  await s.restart({ downMs: 200 })
  t.equal(s.port, port)
  t.equal(s.resourceVersion, rv)
  await waitFor(() => s.watchCount('services') === 1, 'the informer is watching again', 8000)
  s.create(svc('after'))
  await waitFor(() => seen.adds.includes('after'), 'and sees new objects')
})
