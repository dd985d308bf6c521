// docs/rbac.yaml grants every request the controller makes, and no more
// than the rules documented: a full life cycle (create, conflict, repeated
// event, delete) in `both` mode, every request checked against the rules.

import t from 'tap'
import { readFile } from 'node:fs/promises'
import { loadAllYaml } from '@kubernetes/client-node'
import { gatewayApiCrds } from '../../src/sim/gateway-impl.js'
import { freePort, ingressOf, lbService, startHarness, waitFor } from './fixtures/harness.js'

interface Rule { apiGroups: string[], resources: string[], verbs: string[] }

t.test('every request of a full life cycle is allowed by docs/rbac.yaml', async (t) => {
  const docs = loadAllYaml(await readFile(new URL('../../../docs/rbac.yaml', import.meta.url), 'utf8')) as Array<{ kind: string, rules?: Rule[] }>
  const rules = docs.find((d) => d.kind === 'ClusterRole')?.rules ?? []
  const granted = new Set<string>()
  for (const r of rules) for (const g of r.apiGroups) for (const res of r.resources) for (const v of r.verbs) granted.add(`${v} ${g === '' ? res : `${res.split('/')[0]}.${g}${res.includes('/') ? `/${res.split('/')[1]}` : ''}`}`)
  t.same([...granted].sort(), [
    'create events', 'get services', 'list endpointslices.discovery.k8s.io',
    'list gateways.gateway.networking.k8s.io', 'list grpcroutes.gateway.networking.k8s.io', 'list httproutes.gateway.networking.k8s.io',
    'list ingressclasses.networking.k8s.io', 'list ingresses.networking.k8s.io', 'list namespaces', 'list nodes', 'list services',
    'list tlsroutes.gateway.networking.k8s.io', 'patch events', 'patch services', 'patch services/status',
    'watch endpointslices.discovery.k8s.io',
    'watch gateways.gateway.networking.k8s.io', 'watch grpcroutes.gateway.networking.k8s.io', 'watch httproutes.gateway.networking.k8s.io',
    'watch ingressclasses.networking.k8s.io', 'watch ingresses.networking.k8s.io', 'watch namespaces',
    'watch nodes', 'watch services', 'watch tlsroutes.gateway.networking.k8s.io',
  ], 'the documented rules, and only those')

  const h = await startHarness(t, { routing: { mode: 'both', httpPort: await freePort(), httpsPort: await freePort() }, controller: { informers: { absentRetryMs: 100 } } })
  // The Gateway API installed: its informers start from discovery.
  for (const crd of gatewayApiCrds()) h.api.create(crd)
  await waitFor(() => Object.keys(h.ctl.snapshot().gatewayApi).length === 4, 'the Gateway API watched')
  h.api.fail({ verb: 'patch', resource: 'services', subresource: '', code: 409, times: 1 })
  h.api.create(lbService('web', [{ name: 'http', port: 18080 }]))
  await waitFor(() => ingressOf(h.api, 'web').length === 2, 'ip and hostname in status')

  // A warning that comes, goes and comes back: the second time its event is bumped (count 2).
  for (const ready of [false, true, false]) {
    for (const n of ['sim-worker', 'sim-worker2']) h.api.setNodeReady(n, ready)
    await waitFor(() => (h.ctl.snapshot().services[0]?.nodes.length === 0) === !ready, `nodes ready=${String(ready)}`)
  }
  const ev = await waitFor(() => h.api.list('events', 'default').find((e) => (e as unknown as { reason: string, count: number }).reason === 'NoReadyNodes' && (e as unknown as { count: number }).count === 2), 'the repeated event')
  const e = ev as unknown as { count: number, firstTimestamp: string, lastTimestamp: string }
  t.equal(e.count, 2, 'one Event object, count 2')
  t.ok(Date.parse(e.lastTimestamp) >= Date.parse(e.firstTimestamp), 'lastTimestamp moved')
  t.equal(h.api.list('events', 'default').filter((x) => (x as unknown as { reason: string }).reason === 'NoReadyNodes').length, 1)

  h.api.delete('services', 'web')
  await waitFor(() => h.api.tryGet('services', 'web') === undefined, 'the Service gone', 3000)

  // Discovery (resource '') is granted to every authenticated user by the default system:discovery role.
  const made = new Set(h.api.requests.filter((r) => r.resource !== '').map((r) => `${r.verb} ${r.resource}${r.subresource !== '' ? `/${r.subresource}` : ''}`))
  for (const m of made) t.ok(granted.has(m), `granted: ${m}`)
  for (const needed of ['get services', 'patch services', 'patch services/status', 'create events', 'patch events', 'watch services', 'list ingresses.networking.k8s.io',
    'watch gateways.gateway.networking.k8s.io', 'watch httproutes.gateway.networking.k8s.io', 'watch grpcroutes.gateway.networking.k8s.io',
    'watch tlsroutes.gateway.networking.k8s.io', 'watch namespaces']) {
    t.ok(made.has(needed), `used: ${needed}`)
  }
})
