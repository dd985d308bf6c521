import t from 'tap'
import { parseFieldSelector, parseLabelSelector } from '../../src/sim/selectors.js'
import { RESOURCES, type KubeObject, type ResourceDef } from '../../src/sim/resources.js'
import { humanDuration, renderTable } from '../../src/sim/tables.js'

const services = RESOURCES.find((r) => r.plural === 'services') as ResourceDef
const events = RESOURCES.find((r) => r.plural === 'events' && r.group === '') as ResourceDef

t.test('label selector grammar', async (t) => {
  const l = { app: 'web', tier: 'front', 'example.com/ver': '3' }
  const cases: Array<[string, boolean]> = [
    ['', true],
    ['app=web', true],
    ['app==web', true],
    ['app!=web', false],
    ['app != db', true],
    ['app', true],
    ['!app', false],
    ['!missing', true],
    ['missing!=x', true],
    ['app in (web, db)', true],
    ['app notin (web)', false],
    ['missing notin (x)', true],
    ['app=web,tier=front', true],
    ['app=web, tier=back', false],
    ['example.com/ver>2', true],
    ['example.com/ver<3', false],
  ]
  for (const [sel, want] of cases) t.equal(parseLabelSelector(sel)(l), want, JSON.stringify(sel))
  for (const bad of ['app=', 'app in web', 'app in (a', '=x', 'a b', 'app=web,', 'x>y', '-bad=1', 'tier in ()']) {
    if (bad === 'app=') { t.equal(parseLabelSelector(bad)({ app: '' }), true, 'an empty value is a value'); continue }
    t.throws(() => parseLabelSelector(bad), { name: 'ApiStatusError', statusCode: 400 }, JSON.stringify(bad))
  }
})

t.test('field selector grammar and supported labels', async (t) => {
  const o = { apiVersion: 'v1', kind: 'Event', metadata: { name: 'a,b', namespace: 'ns' }, involvedObject: { kind: 'Service', name: 'web' }, source: { component: 'kind-tunnel' } } as unknown as KubeObject
  t.equal(parseFieldSelector('involvedObject.name=web,involvedObject.kind==Service', events)(o), true)
  t.equal(parseFieldSelector('source=kind-tunnel', events)(o), true)
  t.equal(parseFieldSelector('metadata.namespace!=ns', events)(o), false)
  t.equal(parseFieldSelector('metadata.name=a\\,b', events)(o), true, 'escaped comma')
  t.throws(() => parseFieldSelector('spec.type=LoadBalancer', events), { name: 'ApiStatusError', statusCode: 400 })
  t.throws(() => parseFieldSelector('justaword', services), { name: 'ApiStatusError', statusCode: 400 })
  t.equal(parseFieldSelector('spec.type=LoadBalancer', services)({ metadata: {}, spec: { type: 'LoadBalancer' } } as unknown as KubeObject), true)
})

t.test('ages print as kubectl prints them', async (t) => {
  const s = 1000
  const m = 60 * s
  const h = 60 * m
  const d = 24 * h
  const cases: Array<[number, string]> = [
    [-5 * s, '<invalid>'], [-500, '0s'], [0, '0s'], [59 * s, '59s'], [119 * s, '119s'], [2 * m, '2m'], [2 * m + 5 * s, '2m5s'],
    [10 * m, '10m'], [179 * m, '179m'], [3 * h, '3h'], [3 * h + 7 * m, '3h7m'], [8 * h, '8h'], [47 * h, '47h'],
    [2 * d, '2d'], [2 * d + 5 * h, '2d5h'], [8 * d, '8d'], [400 * d, '400d'], [730 * d, '2y'], [800 * d, '2y70d'], [9 * 365 * d, '9y'],
  ]
  for (const [ms, want] of cases) t.equal(humanDuration(ms), want, `${ms} ms`)
})

t.test('service rows: external IP forms and ports', async (t) => {
  const mk = (spec: Record<string, unknown>, status: Record<string, unknown> = {}): KubeObject =>
    ({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'x', creationTimestamp: new Date().toISOString() }, spec, status }) as unknown as KubeObject
  const cells = (o: KubeObject): unknown[] => ((renderTable(services, 'services', [o], { apiVersion: 'meta.k8s.io/v1', includeObject: 'None' }).rows as Array<{ cells: unknown[] }>)[0]?.cells ?? [])
  t.same(cells(mk({ type: 'LoadBalancer', clusterIPs: ['10.96.0.9'], ports: [{ port: 80, nodePort: 30080, protocol: 'TCP' }] })).slice(1, 5), ['LoadBalancer', '10.96.0.9', '<pending>', '80:30080/TCP'])
  t.equal(cells(mk({ type: 'LoadBalancer', ports: [] }, { loadBalancer: { ingress: [{ ip: '127.0.0.5' }, { hostname: 'lb.test' }] } }))[3], '127.0.0.5,lb.test')
  t.equal(cells(mk({ type: 'LoadBalancer', ports: [] }, { loadBalancer: { ingress: [{ hostname: 'a-very-long-hostname.example.test' }] } }))[3], 'a-very-long-hostname.example.test', 'server-side printing is wide: nothing is cut')
  t.equal(cells(mk({ type: 'ClusterIP', externalIPs: ['192.0.2.1'], ports: [{ port: 53, protocol: 'UDP' }] }))[3], '192.0.2.1')
  t.equal(cells(mk({ type: 'ClusterIP', ports: [] }))[4], '<none>')
  t.equal(cells(mk({ type: 'ExternalName', externalName: 'db.example.test' }))[3], 'db.example.test')
  t.equal(cells(mk({ type: 'ClusterIP', selector: { b: '2', a: '1' } }))[6], 'a=1,b=2')
})
