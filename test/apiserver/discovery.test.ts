import t from 'tap'
import { request, startSim } from './fixtures/helpers.js'

const AGG = 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json'

t.test('legacy discovery documents', async (t) => {
  const s = await startSim(t)
  const api = await request(s.url, 'GET', '/api')
  t.equal(api.status, 200)
  t.same(api.json.versions, ['v1'])
  t.equal(api.json.kind, 'APIVersions')

  const v1 = await request(s.url, 'GET', '/api/v1')
  t.equal(v1.json.kind, 'APIResourceList')
  t.equal(v1.json.groupVersion, 'v1')
  const names = v1.json.resources.map((r: { name: string }) => r.name)
  for (const n of ['services', 'services/status', 'nodes', 'nodes/status', 'namespaces', 'events', 'endpoints']) t.ok(names.includes(n), n)
  const svc = v1.json.resources.find((r: { name: string }) => r.name === 'services')
  t.same(svc.shortNames, ['svc'])
  t.equal(svc.namespaced, true)
  t.ok(svc.verbs.includes('watch'))

  const apis = await request(s.url, 'GET', '/apis')
  t.equal(apis.json.kind, 'APIGroupList')
  const groups = apis.json.groups.map((g: { name: string }) => g.name)
  for (const g of ['discovery.k8s.io', 'networking.k8s.io', 'events.k8s.io', 'coordination.k8s.io']) t.ok(groups.includes(g), g)

  const disc = await request(s.url, 'GET', '/apis/discovery.k8s.io/v1')
  t.equal(disc.json.resources[0].name, 'endpointslices')
  t.equal(disc.json.resources[0].kind, 'EndpointSlice')
  const group = await request(s.url, 'GET', '/apis/networking.k8s.io')
  t.equal(group.json.kind, 'APIGroup')
  t.equal(group.json.preferredVersion.groupVersion, 'networking.k8s.io/v1')

  const missing = await request(s.url, 'GET', '/apis/example.com/v1')
  t.equal(missing.status, 404)
  t.equal(missing.json.kind, 'Status')
  t.equal(missing.json.reason, 'NotFound')
})

t.test('aggregated discovery (apidiscovery.k8s.io/v2) when asked, legacy when disabled', async (t) => {
  const s = await startSim(t)
  const core = await request(s.url, 'GET', '/api', { headers: { accept: AGG } })
  t.match(core.headers['content-type'], /g=apidiscovery\.k8s\.io;v=v2;as=APIGroupDiscoveryList/)
  t.equal(core.json.kind, 'APIGroupDiscoveryList')
  const res = core.json.items[0].versions[0].resources.find((r: { resource: string }) => r.resource === 'services')
  t.equal(res.scope, 'Namespaced')
  t.same(res.subresources[0].subresource, 'status')
  const named = await request(s.url, 'GET', '/apis', { headers: { accept: AGG } })
  t.ok(named.json.items.some((i: { metadata: { name: string } }) => i.metadata.name === 'discovery.k8s.io'))

  const legacy = await startSim(t, { aggregatedDiscovery: false })
  const plain = await request(legacy.url, 'GET', '/api', { headers: { accept: AGG } })
  t.equal(plain.json.kind, 'APIVersions')
})

t.test('version, health and the OpenAPI v3 index kubectl validates against', async (t) => {
  const s = await startSim(t, { token: 'secret-token' })
  const v = await request(s.url, 'GET', '/version')
  t.equal(v.status, 200, '/version needs no token')
  t.equal(v.json.major, '1')
  t.match(v.json.gitVersion, /^v1\.\d+\.\d+/)
  for (const p of ['/healthz', '/readyz', '/livez']) {
    const r = await request(s.url, 'GET', p)
    t.equal(r.status, 200, p)
    t.equal(r.text, 'ok')
  }
  const auth = { authorization: 'Bearer secret-token' }
  const root = await request(s.url, 'GET', '/openapi/v3', { headers: auth })
  const url = root.json.paths['api/v1'].serverRelativeURL as string
  t.match(url, /^\/openapi\/v3\/api\/v1\?hash=/)
  const doc = await request(s.url, 'GET', url, { headers: auth })
  const patch = doc.json.paths['/api/v1/namespaces/{namespace}/services/{name}'].patch
  t.same(patch['x-kubernetes-group-version-kind'], { group: '', version: 'v1', kind: 'Service' })
  t.ok(patch.parameters.some((p: { name: string }) => p.name === 'fieldValidation'))
  t.equal((await request(s.url, 'GET', '/openapi/v2', { headers: auth })).status, 404)
})
