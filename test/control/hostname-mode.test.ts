// Hostname mode: two Services share one HTTP listener on 127.0.0.1, routed
// by Host; each status carries its hostname; an Ingress host reaches the
// Service that fronts its class.

import t from 'tap'
import { freePort, httpGet, ingressOf, lbService, startHarness, waitFor, within } from './fixtures/harness.js'

t.test('Services share a listener by name, with their hostnames in status', async (t) => {
  const httpPort = await freePort()
  const h = await startHarness(t, { routing: { mode: 'hostname', httpPort, httpsPort: await freePort() }, start: true })
  h.api.create(lbService('web', [{ name: 'http', port: 80 }]))
  h.api.create(lbService('ctrl', [{ name: 'http', port: 80 }], { annotations: { 'kind-tunnel.dev/ingress-class': 'nginx' } }))
  h.api.create({ apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', metadata: { name: 'app', namespace: 'default' }, spec: { ingressClassName: 'nginx', rules: [{ host: 'app.example.test' }] } })
  await h.serveNodePorts('web')
  await h.serveNodePorts('ctrl')
  const st = await waitFor(() => {
    const a = ingressOf(h.api, 'web')
    const b = ingressOf(h.api, 'ctrl')
    return a.length > 0 && b.length > 0 ? { a, b } : undefined
  }, 'both statuses')
  t.same(st.a, [{ hostname: 'web.default.localhost', ports: [{ port: 80, protocol: 'TCP' }] }])
  t.same(st.b, [{ hostname: 'ctrl.default.localhost', ports: [{ port: 80, protocol: 'TCP' }] }])
  const nodePort = (name: string): number => (h.api.get('services', name) as unknown as { spec: { ports: Array<{ nodePort: number }> } }).spec.ports[0]?.nodePort as number
  t.match(await httpGet('127.0.0.1', httpPort, 3000, 'web.default.localhost'), new RegExp(`:${nodePort('web')}$`), 'web by its name')
  t.match(await httpGet('127.0.0.1', httpPort, 3000, 'ctrl.default.localhost:8080'), new RegExp(`:${nodePort('ctrl')}$`), 'ctrl by its name (with a port in Host)')
  t.match(await httpGet('127.0.0.1', httpPort, 3000, 'app.example.test'), new RegExp(`:${nodePort('ctrl')}$`), 'the Ingress host goes to the controller Service')
  const snap = h.ctl.snapshot()
  t.same(snap.services.find((s) => s.key === 'default/ctrl')?.hostnames, ['app.example.test', 'ctrl.default.localhost'])
  t.ok(snap.informers.some((i) => i.resource === 'ingresses.networking.k8s.io' && i.watching), 'Ingresses are watched in hostname mode')
  t.same(snap.addresses, [], 'no address is bound in hostname mode')
})

t.test('without networking.k8s.io access, hostname mode still serves (Ingress hosts off)', async (t) => {
  const httpPort = await freePort()
  const h = await startHarness(t, { routing: { mode: 'hostname', httpPort, httpsPort: await freePort() }, start: false })
  h.api.forbid({ resource: 'ingresses.networking.k8s.io' })
  h.api.forbid({ resource: 'ingressclasses.networking.k8s.io' })
  await h.startController()
  await within(h.ctl.synced, 5000, 'synced')
  h.api.create(lbService('web', [{ name: 'http', port: 80 }]))
  await h.serveNodePorts('web')
  await waitFor(() => ingressOf(h.api, 'web').length > 0, 'status')
  t.match(await httpGet('127.0.0.1', httpPort, 3000, 'web.default.localhost'), /^node=/)
  const ing = h.ctl.snapshot().informers.find((i) => i.resource === 'ingresses.networking.k8s.io')
  t.equal(ing?.absent, true, 'Ingresses are marked absent')
  t.equal(ing?.lastError?.code, 'KT_ERR_KUBE_FORBIDDEN')
})
