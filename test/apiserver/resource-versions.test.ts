import t from 'tap'
import { request, startSim, svc } from './fixtures/helpers.js'

t.test('one global resourceVersion, bumped by every write and only by writes', async (t) => {
  const s = await startSim(t)
  const before = Number(s.resourceVersion)
  const a = await request(s.url, 'POST', '/api/v1/namespaces/default/services', { body: svc('a') })
  t.equal(a.status, 201)
  t.equal(Number(a.json.metadata.resourceVersion), before + 1)
  t.match(a.json.metadata.uid, /^[0-9a-f-]{36}$/)
  t.match(a.json.metadata.creationTimestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/)
  t.equal(a.json.kind, 'Service')
  t.equal(a.json.apiVersion, 'v1')

  const n = s.addNode({ name: 'n1', internalIP: '10.0.0.1' })
  t.equal(Number(n.metadata.resourceVersion), before + 2, 'RVs are global across kinds')

  const list = await request(s.url, 'GET', '/api/v1/namespaces/default/services')
  t.equal(list.json.kind, 'ServiceList')
  t.equal(list.json.metadata.resourceVersion, String(before + 2), 'a list carries the store RV, not its newest item\'s')
  t.equal(list.json.items[0].kind, undefined, 'list items carry no kind, as on the real server')

  // A no-op write is not a write: no new RV (etcd3 GuaranteedUpdate skips it).
  const same = await request(s.url, 'PATCH', '/api/v1/namespaces/default/services/a', {
    body: { metadata: { labels: null } }, headers: { 'content-type': 'application/merge-patch+json' },
  })
  t.equal(same.status, 200)
  t.equal(same.json.metadata.resourceVersion, a.json.metadata.resourceVersion)
  t.equal(s.resourceVersion, String(before + 2))

  const changed = await request(s.url, 'PATCH', '/api/v1/namespaces/default/services/a', {
    body: { metadata: { labels: { x: 'y' } } }, headers: { 'content-type': 'application/merge-patch+json' },
  })
  t.equal(changed.json.metadata.resourceVersion, String(before + 3))
  t.equal(changed.json.metadata.uid, a.json.metadata.uid, 'uid is stable')
  t.equal(changed.json.metadata.creationTimestamp, a.json.metadata.creationTimestamp)
})

t.test('generation as the real strategies keep it', async (t) => {
  const s = await startSim(t)
  const service = s.create(svc('web'))
  t.equal(service.metadata.generation, undefined, 'Services carry no generation on a real server')
  const ing = s.create({
    apiVersion: 'networking.k8s.io/v1',
    kind: 'Ingress',
    metadata: { name: 'web', namespace: 'default' },
    spec: { rules: [{ host: 'a.test' }] },
  })
  t.equal(ing.metadata.generation, 1)
  const relabelled = s.patch('ingresses', 'web', { metadata: { labels: { a: 'b' } } })
  t.equal(relabelled.metadata.generation, 1, 'metadata changes do not bump generation')
  const respec = s.patch('ingresses', 'web', { spec: { rules: [{ host: 'b.test' }] } })
  t.equal(respec.metadata.generation, 2)
  const status = s.patch('ingresses', 'web', { status: { loadBalancer: { ingress: [{ ip: '127.0.0.9' }] } } }, { subresource: 'status' })
  t.equal(status.metadata.generation, 2, 'status writes do not bump generation')
})

t.test('list: namespaced, all namespaces, selectors, pagination', async (t) => {
  const s = await startSim(t)
  s.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'other' } })
  s.create({ ...svc('a'), metadata: { name: 'a', namespace: 'default', labels: { tier: 'web' } } })
  s.create({ ...svc('b'), metadata: { name: 'b', namespace: 'default', labels: { tier: 'db' } } })
  s.create({ ...svc('c', { type: 'ClusterIP' }), metadata: { name: 'c', namespace: 'other', labels: { tier: 'web' } } })

  const names = (r: { json: { items: Array<{ metadata: { name: string } }> } }): string[] => r.json.items.map((i) => i.metadata.name)
  t.same(names(await request(s.url, 'GET', '/api/v1/namespaces/other/services')), ['c'])
  t.same(names(await request(s.url, 'GET', '/api/v1/services')), ['a', 'b', 'kubernetes', 'c'], 'all namespaces, in key order')
  t.same(names(await request(s.url, 'GET', '/api/v1/services?labelSelector=tier%3Dweb')), ['a', 'c'])
  t.same(names(await request(s.url, 'GET', '/api/v1/services?labelSelector=tier%20in%20(db)')), ['b'])
  t.same(names(await request(s.url, 'GET', '/api/v1/services?labelSelector=!tier')), ['kubernetes'])
  t.same(names(await request(s.url, 'GET', '/api/v1/services?fieldSelector=metadata.name%3Db')), ['b'])
  t.same(names(await request(s.url, 'GET', '/api/v1/services?fieldSelector=spec.type%3DClusterIP')), ['kubernetes', 'c'])
  t.same(names(await request(s.url, 'GET', '/api/v1/services?fieldSelector=metadata.namespace!%3Ddefault')), ['c'])

  const bad = await request(s.url, 'GET', '/api/v1/services?fieldSelector=spec.selector%3Dx')
  t.equal(bad.status, 400)
  t.equal(bad.json.reason, 'BadRequest')
  t.match(bad.json.message, /field label not supported: spec\.selector/)
  const badLabel = await request(s.url, 'GET', '/api/v1/services?labelSelector=a%20in%20b')
  t.equal(badLabel.status, 400)

  const p1 = await request(s.url, 'GET', '/api/v1/services?limit=2')
  t.same(names(p1), ['a', 'b'])
  t.equal(p1.json.metadata.remainingItemCount, 2)
  t.type(p1.json.metadata.continue, 'string')
  const p2 = await request(s.url, 'GET', `/api/v1/services?limit=2&continue=${encodeURIComponent(p1.json.metadata.continue)}`)
  t.same(names(p2), ['kubernetes', 'c'])
  t.equal(p2.json.metadata.continue, undefined)
  t.equal(p2.json.metadata.resourceVersion, p1.json.metadata.resourceVersion, 'pages share the first page\'s RV')

  const future = await request(s.url, 'GET', `/api/v1/services?resourceVersion=${Number(s.resourceVersion) + 100}`)
  t.equal(future.status, 504)
  t.equal(future.json.details.causes[0].reason, 'ResourceVersionTooLarge')
})

t.test('errors are Status objects with the real reasons', async (t) => {
  const s = await startSim(t)
  const nf = await request(s.url, 'GET', '/api/v1/namespaces/default/services/nope')
  t.equal(nf.status, 404)
  t.same(nf.json, {
    kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure',
    message: 'services "nope" not found', reason: 'NotFound', details: { name: 'nope', kind: 'services' }, code: 404,
  })
  const grouped = await request(s.url, 'GET', '/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/nope')
  t.equal(grouped.json.message, 'endpointslices.discovery.k8s.io "nope" not found')
  t.equal(grouped.json.details.group, 'discovery.k8s.io')

  const nsMissing = await request(s.url, 'POST', '/api/v1/namespaces/ghost/services', { body: svc('x', {}, 'ghost') })
  t.equal(nsMissing.status, 404)
  t.equal(nsMissing.json.message, 'namespaces "ghost" not found')

  const badJson = await request(s.url, 'POST', '/api/v1/namespaces/default/services', { body: '{"kind":' })
  t.equal(badJson.status, 400)
  t.equal(badJson.json.reason, 'BadRequest')

  const badName = await request(s.url, 'POST', '/api/v1/namespaces/default/services', { body: svc('Bad_Name') })
  t.equal(badName.status, 422)
  t.equal(badName.json.reason, 'Invalid')
  t.equal(badName.json.details.causes[0].field, 'metadata.name')

  const wrongKind = await request(s.url, 'POST', '/api/v1/namespaces/default/services', { body: { ...svc('x'), kind: 'Node' } })
  t.equal(wrongKind.status, 400)

  const method = await request(s.url, 'POST', '/api/v1/namespaces/default/services/x')
  t.equal(method.status, 405)
  t.equal(method.json.reason, 'MethodNotAllowed')

  const media = await request(s.url, 'PATCH', '/api/v1/namespaces/default/services/kubernetes', { body: {}, headers: { 'content-type': 'application/apply-patch+yaml' } })
  t.equal(media.status, 415)
  t.equal(media.json.reason, 'UnsupportedMediaType')

  const proto = await request(s.url, 'GET', '/api/v1/namespaces/default/services', { headers: { accept: 'application/vnd.kubernetes.protobuf' } })
  t.equal(proto.status, 406)

  const gen = await request(s.url, 'POST', '/api/v1/namespaces/default/events', {
    body: { metadata: { generateName: 'web.' }, involvedObject: { kind: 'Service', name: 'web', namespace: 'default' }, reason: 'Test', message: 'hello', type: 'Normal' },
  })
  t.equal(gen.status, 201)
  t.match(gen.json.metadata.name, /^web\.[a-z0-9]{5}$/)
})
