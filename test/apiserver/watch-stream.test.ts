import t from 'tap'
import { rawWatch, request, startSim, svc } from './fixtures/helpers.js'

t.test('a watch streams ADDED, MODIFIED and DELETED as newline-delimited JSON', async (t) => {
  const s = await startSim(t)
  const rv = s.resourceVersion
  const w = await rawWatch(t, s.url, `/api/v1/namespaces/default/services?watch=1&resourceVersion=${rv}`)
  t.equal(w.status, 200)
  s.create(svc('web'))
  s.patch('services', 'web', { metadata: { labels: { a: 'b' } } })
  s.delete('services', 'web')
  const added = await w.next()
  const modified = await w.next()
  const deleted = await w.next()
  t.same([added.type, modified.type, deleted.type], ['ADDED', 'MODIFIED', 'DELETED'])
  t.equal(added.object.kind, 'Service', 'watch objects carry kind and apiVersion')
  t.equal(added.object.apiVersion, 'v1')
  t.equal(modified.object.metadata.labels.a, 'b')
  t.ok(Number(deleted.object.metadata.resourceVersion) > Number(modified.object.metadata.resourceVersion), 'DELETED carries the deletion RV')
})

t.test('resume from an RV replays what was missed; RV 0 starts with the current state', async (t) => {
  const s = await startSim(t)
  const start = s.resourceVersion
  s.create(svc('a'))
  s.create(svc('b'))
  const w = await rawWatch(t, s.url, `/api/v1/services?watch=true&resourceVersion=${start}`)
  t.same([(await w.next()).object.metadata.name, (await w.next()).object.metadata.name], ['a', 'b'])

  const fresh = await rawWatch(t, s.url, '/api/v1/namespaces/default/services?watch=true&resourceVersion=0')
  const names = [(await fresh.next()).object.metadata.name, (await fresh.next()).object.metadata.name, (await fresh.next()).object.metadata.name].sort()
  t.same(names, ['a', 'b', 'kubernetes'])
  t.ok(fresh.events.every((e) => e.type === 'ADDED'))

  const legacyPath = await rawWatch(t, s.url, `/api/v1/watch/namespaces/default/services/a?resourceVersion=${s.resourceVersion}`)
  s.patch('services', 'b', { metadata: { labels: { x: 'y' } } })
  s.patch('services', 'a', { metadata: { labels: { x: 'y' } } })
  const ev = await legacyPath.next()
  t.equal(ev.object.metadata.name, 'a', 'the /watch/ path to one name sees only that object')
})

t.test('an expired RV gets an ERROR event with the 410 Expired Status, as the watch cache sends it', async (t) => {
  const s = await startSim(t)
  const old = s.resourceVersion
  s.create(svc('a'))
  s.compact()
  const w = await rawWatch(t, s.url, `/api/v1/namespaces/default/services?watch=1&resourceVersion=${old}`)
  t.equal(w.status, 200)
  const ev = await w.next()
  t.equal(ev.type, 'ERROR')
  t.same(ev.object, {
    kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure',
    message: `too old resource version: ${old} (${s.resourceVersion})`, reason: 'Expired', code: 410,
  })
  t.ok(await w.ended(), 'and the stream ends')

  const current = await rawWatch(t, s.url, `/api/v1/namespaces/default/services?watch=1&resourceVersion=${s.resourceVersion}`)
  s.create(svc('b'))
  t.equal((await current.next()).type, 'ADDED', 'the current RV still works after compaction')
})

t.test('a small history window expires RVs on its own', async (t) => {
  const s = await startSim(t, { historySize: 3, seedDefaults: false })
  s.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } })
  const old = s.resourceVersion
  for (const n of ['a', 'b', 'c', 'd']) s.create(svc(n))
  const w = await rawWatch(t, s.url, `/api/v1/services?watch=1&resourceVersion=${old}`)
  t.equal((await w.next()).type, 'ERROR')
  const recent = await rawWatch(t, s.url, `/api/v1/services?watch=1&resourceVersion=${Number(s.resourceVersion) - 2}`)
  t.same([(await recent.next()).object.metadata.name, (await recent.next()).object.metadata.name], ['c', 'd'])
})

t.test('bookmarks, initial-events-end, and timeoutSeconds', async (t) => {
  const s = await startSim(t, { bookmarkIntervalMs: 100 })
  const w = await rawWatch(t, s.url, `/api/v1/services?watch=1&allowWatchBookmarks=true&resourceVersion=${s.resourceVersion}`)
  const bm = await w.next(3000)
  t.equal(bm.type, 'BOOKMARK')
  t.same(bm.object, { kind: 'Service', apiVersion: 'v1', metadata: { resourceVersion: s.resourceVersion } })

  const list = await rawWatch(t, s.url, '/api/v1/services?watch=1&allowWatchBookmarks=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion=')
  t.equal((await list.next()).type, 'ADDED')
  const end = await list.next()
  t.equal(end.type, 'BOOKMARK')
  t.equal(end.object.metadata.annotations['k8s.io/initial-events-end'], 'true')

  const short = await rawWatch(t, s.url, `/api/v1/services?watch=1&timeoutSeconds=1&resourceVersion=${s.resourceVersion}`)
  const t0 = Date.now()
  t.ok(await short.ended(4000), 'the server ends the watch after timeoutSeconds')
  t.ok(Date.now() - t0 >= 800, 'not before')
  t.equal(s.watchCount('services'), 2)
})

t.test('selector watches see objects enter and leave the selection', async (t) => {
  const s = await startSim(t)
  s.create(svc('web'))
  const w = await rawWatch(t, s.url, `/api/v1/namespaces/default/services?watch=1&labelSelector=expose%3Dyes&resourceVersion=${s.resourceVersion}`)
  s.patch('services', 'web', { metadata: { labels: { expose: 'yes' } } })
  s.patch('services', 'web', { metadata: { labels: { other: 'x' } } })
  s.patch('services', 'web', { metadata: { labels: { expose: 'no' } } })
  t.same([(await w.next()).type, (await w.next()).type, (await w.next()).type], ['ADDED', 'MODIFIED', 'DELETED'])
  const bad = await request(s.url, 'GET', '/api/v1/services?watch=1&fieldSelector=spec.ports%3D1')
  t.equal(bad.status, 400)
})

t.test('a watch on a Table (kubectl get -w) streams Table rows', async (t) => {
  const s = await startSim(t)
  const w = await rawWatch(t, s.url, `/api/v1/namespaces/default/services?watch=1&resourceVersion=${s.resourceVersion}`, { accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' })
  s.create(svc('web'))
  s.patch('services', 'web', { metadata: { labels: { a: 'b' } } })
  const first = await w.next()
  t.equal(first.object.kind, 'Table')
  t.equal(first.object.columnDefinitions[0].name, 'Name')
  t.equal(first.object.rows[0].cells[0], 'web')
  const second = await w.next()
  t.same(second.object.columnDefinitions, [], 'column headers only on the first event')
})
