import t from 'tap'
import { jsonPatch, mergePatch, strategicMerge } from '../../src/sim/patch.js'
import { request, startSim, svc } from './fixtures/helpers.js'

const MERGE = { 'content-type': 'application/merge-patch+json' }
const SMP = { 'content-type': 'application/strategic-merge-patch+json' }
const JSONP = { 'content-type': 'application/json-patch+json' }

t.test('RFC 7386 merge patch', async (t) => {
  t.same(mergePatch({ a: 1, b: { c: 2, d: 3 } }, { b: { c: null, e: 4 }, f: [1] }), { a: 1, b: { d: 3, e: 4 }, f: [1] })
  t.same(mergePatch({ a: [1, 2] }, { a: [3] }), { a: [3] }, 'lists are replaced')
  t.same(mergePatch({ a: 1 }, 'x'), 'x')
})

t.test('RFC 6902 JSON patch', async (t) => {
  const doc = { a: { b: [1, 2] }, 'x/y': 1, 't~': 2 }
  t.same(jsonPatch(doc, [{ op: 'add', path: '/a/b/1', value: 9 }, { op: 'add', path: '/a/b/-', value: 7 }]), { a: { b: [1, 9, 2, 7] }, 'x/y': 1, 't~': 2 })
  t.same(jsonPatch(doc, [{ op: 'remove', path: '/x~1y' }, { op: 'replace', path: '/t~0', value: 3 }]), { a: { b: [1, 2] }, 't~': 3 })
  t.same(jsonPatch(doc, [{ op: 'move', from: '/a/b', path: '/c' }]), { a: {}, 'x/y': 1, 't~': 2, c: [1, 2] })
  t.same((jsonPatch(doc, [{ op: 'copy', from: '/a', path: '/d' }]) as any).d, { b: [1, 2] })
  t.throws(() => jsonPatch(doc, [{ op: 'test', path: '/x~1y', value: 2 }]), { name: 'ApiStatusError', statusCode: 422 })
  t.throws(() => jsonPatch(doc, [{ op: 'remove', path: '/nope' }]), { name: 'ApiStatusError', statusCode: 422 })
  t.throws(() => jsonPatch(doc, [{ op: 'add', path: '/a/b/5', value: 1 }]), { name: 'ApiStatusError', statusCode: 422 })
  t.throws(() => jsonPatch(doc, { op: 'add' } as never), { name: 'ApiStatusError', statusCode: 400 })
  t.same(doc, { a: { b: [1, 2] }, 'x/y': 1, 't~': 2 }, 'the input is never mutated')
})

t.test('strategic merge patch: merge keys, scalar sets and directives', async (t) => {
  const lists = { 'spec.ports': { mergeKey: 'port' }, 'metadata.finalizers': {} }
  const orig = {
    metadata: { finalizers: ['a'], labels: { x: '1' } },
    spec: { ports: [{ port: 80, name: 'http', targetPort: 8080 }, { port: 443, name: 'https' }], externalIPs: ['1.1.1.1'] },
    status: { loadBalancer: { ingress: [{ ip: '1.2.3.4' }, { ip: '1.2.3.5' }] } },
  }
  const r = strategicMerge(orig, {
    metadata: { finalizers: ['b', 'a'] },
    spec: { ports: [{ port: 80, targetPort: 9090 }, { port: 8443, name: 'alt' }], externalIPs: ['2.2.2.2'] },
    status: { loadBalancer: { ingress: [{ ip: '5.6.7.8' }] } },
  }, lists) as any
  t.same(r.metadata.finalizers, ['a', 'b'], 'finalizers (patchStrategy=merge) are a set union')
  t.same(r.spec.ports, [{ port: 80, name: 'http', targetPort: 9090 }, { port: 443, name: 'https' }, { port: 8443, name: 'alt' }], 'ports merge by port')
  t.same(r.spec.externalIPs, ['2.2.2.2'], 'lists without a strategy are replaced')
  t.same(r.status.loadBalancer.ingress, [{ ip: '5.6.7.8' }], 'LoadBalancer ingress is replaced')

  const del = strategicMerge(orig, { spec: { ports: [{ port: 443, $patch: 'delete' }] }, metadata: { '$deleteFromPrimitiveList/finalizers': ['a'] } }, lists) as any
  t.same(del.spec.ports.map((p: { port: number }) => p.port), [80])
  t.same(del.metadata.finalizers, [])
  const rep = strategicMerge(orig, { spec: { ports: [{ port: 1 }, { $patch: 'replace' }] } }, lists) as any
  t.same(rep.spec.ports, [{ port: 1 }])
  const mapReplace = strategicMerge(orig, { metadata: { labels: { $patch: 'replace', y: '2' } } }, lists) as any
  t.same(mapReplace.metadata.labels, { y: '2' })
  const ordered = strategicMerge(orig, { spec: { '$setElementOrder/ports': [{ port: 443 }, { port: 80 }] } }, lists) as any
  t.same(ordered.spec.ports.map((p: { port: number }) => p.port), [443, 80])
  t.throws(() => strategicMerge(orig, { spec: { ports: [{ name: 'no-key' }] } }, lists), { name: 'ApiStatusError', statusCode: 400 })
})

t.test('the three patch types over HTTP, on the main resource and on /status', async (t) => {
  const s = await startSim(t)
  s.create(svc('web', { ports: [{ name: 'http', port: 80, targetPort: 8080 }, { name: 'https', port: 443 }] }))
  const base = '/api/v1/namespaces/default/services/web'

  const smp = await request(s.url, 'PATCH', base, { body: { spec: { ports: [{ port: 80, targetPort: 9090 }] }, metadata: { finalizers: ['kind-tunnel.dev/cleanup'] } }, headers: SMP })
  t.equal(smp.status, 200)
  t.same(smp.json.spec.ports.map((p: { targetPort: number }) => p.targetPort), [9090, 443], 'SMP merged port 80 by its key and kept 443')
  t.same(smp.json.metadata.finalizers, ['kind-tunnel.dev/cleanup'])

  const ignored = await request(s.url, 'PATCH', base, { body: { status: { loadBalancer: { ingress: [{ ip: '127.0.0.9' }] } } }, headers: MERGE })
  t.same(ignored.json.status, { loadBalancer: {} }, 'a main-resource patch ignores status')
  t.equal(ignored.json.metadata.resourceVersion, smp.json.metadata.resourceVersion, 'and so changes nothing')

  const status = await request(s.url, 'PATCH', `${base}/status`, {
    body: { status: { loadBalancer: { ingress: [{ ip: '127.0.0.9' }] } }, spec: { type: 'ClusterIP' }, metadata: { labels: { sneaky: 'yes' } } },
    headers: MERGE,
  })
  t.equal(status.status, 200)
  t.same(status.json.status.loadBalancer.ingress, [{ ip: '127.0.0.9', ipMode: 'VIP' }])
  t.equal(status.json.spec.type, 'LoadBalancer', 'a status patch changes only status')
  t.equal(status.json.metadata.labels, undefined)

  const smpStatus = await request(s.url, 'PATCH', `${base}/status`, { body: { status: { loadBalancer: { ingress: [{ ip: '127.0.0.10' }] } } }, headers: SMP })
  t.same(smpStatus.json.status.loadBalancer.ingress, [{ ip: '127.0.0.10', ipMode: 'VIP' }], 'SMP replaces the ingress list')

  const jp = await request(s.url, 'PATCH', base, {
    body: [{ op: 'test', path: '/spec/ports/1/port', value: 443 }, { op: 'remove', path: '/spec/ports/1' }, { op: 'remove', path: '/metadata/finalizers' }],
    headers: JSONP,
  })
  t.equal(jp.status, 200)
  t.equal(jp.json.spec.ports.length, 1)
  t.equal(jp.json.metadata.finalizers, undefined)

  const failedTest = await request(s.url, 'PATCH', base, { body: [{ op: 'test', path: '/spec/type', value: 'NodePort' }], headers: JSONP })
  t.equal(failedTest.status, 422)

  const stale = await request(s.url, 'PATCH', base, { body: { metadata: { resourceVersion: '1', labels: { a: 'b' } } }, headers: MERGE })
  t.equal(stale.status, 409, 'a resourceVersion in a patch is a precondition')
  t.equal(stale.json.reason, 'Conflict')

  const missing = await request(s.url, 'PATCH', '/api/v1/namespaces/default/services/nope', { body: {}, headers: MERGE })
  t.equal(missing.status, 404)
})
