import t from 'tap'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { startApiServer } from '../../src/sim/apiserver.js'
import { rawWatch, request, startSim, svc, tmpDir } from './fixtures/helpers.js'

t.test('restart() closes every connection and listens again on the same port with the same store', async (t) => {
  const s = await startSim(t)
  s.create(svc('web'))
  const port = s.port
  const rv = s.resourceVersion
  const w = await rawWatch(t, s.url, `/api/v1/services?watch=1&resourceVersion=${rv}`)
  const down = s.restart({ downMs: 300 })
  t.ok(await w.ended(2000), 'the open watch was cut')
  await new Promise((resolve) => setTimeout(resolve, 100))
  await t.rejects(request(`http://127.0.0.1:${port}`, 'GET', '/healthz'), { code: 'ECONNREFUSED' }, 'refused while down')
  await down
  t.equal(s.port, port)
  const r = await request(s.url, 'GET', '/api/v1/namespaces/default/services/web')
  t.equal(r.status, 200)
  t.equal(s.resourceVersion, rv, 'the store and its RV survive')
  const resumed = await rawWatch(t, s.url, `/api/v1/services?watch=1&resourceVersion=${rv}`)
  s.delete('services', 'web')
  t.equal((await resumed.next()).type, 'DELETED', 'a watch resumes from a pre-restart RV')
})

t.test('cutWatches() destroys or ends the open streams, optionally per resource', async (t) => {
  const s = await startSim(t)
  const a = await rawWatch(t, s.url, '/api/v1/services?watch=1&resourceVersion=' + s.resourceVersion)
  const b = await rawWatch(t, s.url, '/api/v1/nodes?watch=1&resourceVersion=' + s.resourceVersion)
  t.equal(s.watchCount(), 2)
  t.equal(s.cutWatches({ resource: 'nodes', mode: 'end' }), 1)
  t.ok(await b.ended(), 'the node watch ended')
  t.equal(s.watchCount(), 1)
  t.equal(s.cutWatches(), 1)
  t.ok(await a.ended(), 'the service watch was destroyed')
  t.equal(s.watchCount(), 0)
})

t.test('forbid() and fail() rules, request counters', async (t) => {
  const s = await startSim(t)
  const lift = s.forbid({ verb: ['list', 'watch'], resource: 'nodes' })
  const denied = await request(s.url, 'GET', '/api/v1/nodes')
  t.equal(denied.status, 403)
  t.equal(denied.json.message, 'nodes is forbidden: User "kubernetes-admin" cannot list resource "nodes" in API group "" at the cluster scope')
  lift()
  t.equal((await request(s.url, 'GET', '/api/v1/nodes')).status, 200)

  s.fail({ verb: 'list', resource: 'services', code: 503, times: 2, retryAfterSeconds: 1 })
  const f1 = await request(s.url, 'GET', '/api/v1/services')
  t.equal(f1.status, 503)
  t.equal(f1.headers['retry-after'], '1')
  t.equal(f1.json.reason, 'ServiceUnavailable')
  t.equal((await request(s.url, 'GET', '/api/v1/services')).status, 503)
  t.equal((await request(s.url, 'GET', '/api/v1/services')).status, 200, 'times: 2 means two failures')

  t.equal(s.requestCount({ verb: 'list', resource: 'services' }), 3)
  t.equal(s.requestCount({ verb: 'list', resource: 'services', code: 503 }), 2)
  t.equal(s.requestCount({ verb: 'list', resource: 'nodes', code: 403 }), 1)
  t.equal(s.requestCount({ resource: 'svc' }), 3, 'short names resolve')
  s.resetRequests()
  t.equal(s.requestCount(), 0)
  t.same(s.requests, [])
})

t.test('kubeconfig() and writeKubeconfig()', async (t) => {
  const s = await startSim(t, { token: 'abc', clusterName: 'demo' })
  const yaml = s.kubeconfig()
  t.match(yaml, `server: "${s.url}"`)
  t.match(yaml, 'token: "abc"')
  t.match(yaml, 'current-context: "kind-demo"')
  const dir = await tmpDir(t)
  const file = join(dir, 'kc')
  await s.writeKubeconfig(file, { namespace: 'kube-system' })
  t.match(await readFile(file, 'utf8'), 'namespace: "kube-system"')
  t.equal((await stat(file)).mode & 0o777, 0o600, 'written private')
  const open = await startSim(t)
  t.match(open.kubeconfig(), 'user: {}')
})

t.test('in-process create/update/mutate/delete, nodes, endpoints, namespaces', async (t) => {
  const s = await startSim(t)
  const n = s.addNode({ name: 'kind-worker', internalIP: '172.18.0.3' })
  t.same((n.status as { addresses: unknown }).addresses, [{ type: 'InternalIP', address: '172.18.0.3' }, { type: 'Hostname', address: 'kind-worker' }])
  const cp = s.addNode({ name: 'kind-control-plane', internalIP: '172.18.0.2', roles: ['control-plane'] })
  t.equal(cp.metadata.labels?.['node.kubernetes.io/exclude-from-external-load-balancers'], '', 'kind keeps the control plane out of LB backends')
  const notReady = s.setNodeReady('kind-worker', false)
  const ready = (notReady.status as { conditions: Array<{ type: string, status: string }> }).conditions.find((c) => c.type === 'Ready')
  t.equal(ready?.status, 'False')

  s.create(svc('web'))
  const stale = s.get('services', 'web')
  s.mutate('services', 'web', (o) => { o.metadata.labels = { a: 'b' } })
  t.throws(() => s.update({ ...stale, metadata: { ...stale.metadata, labels: { c: 'd' } } }), { code: 'KT_ERR_SIM_REQUEST', statusCode: 409, reason: 'Conflict' })
  t.throws(() => s.get('services', 'nope'), { code: 'KT_ERR_SIM_REQUEST', statusCode: 404, reason: 'NotFound' })
  t.throws(() => s.get('widgets', 'x'), { code: 'KT_ERR_INVALID_ARG' })

  const slice = s.setServiceEndpoints({ service: 'web', endpoints: [{ ip: '10.244.1.5', nodeName: 'kind-worker' }] })
  t.equal(slice.metadata.labels?.['kubernetes.io/service-name'], 'web')
  const again = s.setServiceEndpoints({ service: 'web', endpoints: [{ ip: '10.244.1.6', ready: false }] })
  t.equal(again.metadata.name, slice.metadata.name, 'the same slice is updated')
  t.same((again.endpoints as unknown[]).length, 1)
  t.equal(s.list('endpointslices', 'default').length, 1)

  // Namespace deletion: Terminating until its contents are gone (finalizers included).
  s.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team' } })
  s.create({ ...svc('held', {}, 'team'), metadata: { name: 'held', namespace: 'team', finalizers: ['example.test/hold'] } })
  s.create(svc('free', {}, 'team'))
  const ns = s.delete('namespaces', 'team')
  t.equal(ns.deleted, false)
  t.equal((ns.obj.status as { phase: string }).phase, 'Terminating')
  t.equal(s.tryGet('services', 'free', 'team'), undefined)
  t.throws(() => s.create(svc('late', {}, 'team')), { name: 'ApiStatusError', statusCode: 403 }, 'no new content in a terminating namespace')
  s.patch('services', 'held', { metadata: { finalizers: null } }, { namespace: 'team' })
  t.equal(s.tryGet('namespaces', 'team'), undefined, 'the namespace went once it was empty')

  const ev = s.create({
    apiVersion: 'events.k8s.io/v1', kind: 'Event', metadata: { name: 'e1', namespace: 'default' },
    eventTime: '2025-01-01T00:00:00.000000Z', reportingController: 'kind-tunnel', reportingInstance: 'kind-tunnel-1', action: 'Allocate', reason: 'IPAllocated', note: 'hello', type: 'Normal',
    regarding: { kind: 'Service', name: 'web', namespace: 'default' },
  })
  t.equal(ev.apiVersion, 'events.k8s.io/v1')
  const core = s.get('events', 'e1') as Record<string, any>
  t.equal(core.message, 'hello', 'events.k8s.io and core/v1 events are one object')
  t.equal(core.involvedObject.name, 'web')
  t.equal(core.reportingComponent, 'kind-tunnel')
  t.throws(() => s.create({ apiVersion: 'events.k8s.io/v1', kind: 'Event', metadata: { name: 'bad', namespace: 'default' } }), { name: 'ApiStatusError', statusCode: 422 })
})

t.test('bad options are refused with codes', async (t) => {
  await t.rejects(startApiServer({ host: '0.0.0.0' }), { code: 'KT_ERR_WILDCARD_BIND' })
  await t.rejects(startApiServer({ host: '::' }), { code: 'KT_ERR_WILDCARD_BIND' })
  await t.rejects(startApiServer({ host: '192.0.2.1' }), { code: 'KT_ERR_INVALID_ARG' })
  await t.rejects(startApiServer({ port: 70000 }), { code: 'KT_ERR_INVALID_ARG' })
  await t.rejects(startApiServer({ serviceCIDR: '10.96.0.0' }), { code: 'KT_ERR_INVALID_CIDR' })
  await t.rejects(startApiServer({ nodePortRange: [32000, 31000] }), { code: 'KT_ERR_INVALID_ARG' })
  const s = await startSim(t)
  await t.rejects(startApiServer({ port: s.port }), { code: 'KT_ERR_LISTEN' })
  t.throws(() => s.addNode({ name: 'x', internalIP: 'nope' }), { code: 'KT_ERR_INVALID_ARG' })
})
