// An Ingress reaches the LB Service whose address its status carries, with
// no labels and no annotation; and a cluster without the Gateway API CRDs
// behaves as before: the same routes, no Gateway API requests beyond
// discovery, and not one warn or error log line.

import t from 'tap'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { freePort, httpGet, ingressOf, lbService, startHarness, waitFor } from '../control/fixtures/harness.js'
import { apply } from './fixtures/gateway.js'

t.test('an Ingress matched by its status address, no labels', async (t) => {
  const httpPort = await freePort()
  const h = await startHarness(t, { routing: { mode: 'both', httpPort, httpsPort: await freePort() } })
  // Two plain Services on the shared port, neither labelled nor annotated.
  h.api.create(lbService('ctrl', [{ name: 'http', port: 80 }]))
  h.api.create(lbService('web', [{ name: 'http', port: 80 }]))
  await h.serveNodePorts('ctrl')
  await h.serveNodePorts('web')
  const st = await waitFor(() => { const s = ingressOf(h.api, 'ctrl'); return s.some((i) => i.ip !== undefined) ? s : undefined }, 'ctrl status')
  const ip = st.find((i) => i.ip !== undefined)?.ip as string
  // An ingress controller publishes its Service's address on the Ingress, as ingress-nginx does.
  await apply(h.kubeconfig, h.dir, `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: app
  namespace: default
spec:
  ingressClassName: whatever
  rules:
  - host: app.example.test
`, 'ingress.yaml')
  h.api.patch('ingresses', 'app', { status: { loadBalancer: { ingress: [{ ip }] } } }, { subresource: 'status' })
  const nodePort = (h.api.get('services', 'ctrl') as unknown as { spec: { ports: Array<{ nodePort: number }> } }).spec.ports[0]?.nodePort as number
  await waitFor(() => h.snapshot().services.find((s) => s.key === 'default/ctrl')?.hostnames.includes('app.example.test'), 'the Ingress host on ctrl')
  t.match(await httpGet('127.0.0.1', httpPort, 3000, 'app.example.test'), new RegExp(`:${nodePort}$`), 'the Ingress host reaches the Service with its address')
  t.notOk(h.snapshot().services.find((s) => s.key === 'default/web')?.hostnames.includes('app.example.test'), 'not the other Service')
})

t.test('without the Gateway API CRDs: the same as before, no warn or error lines', async (t) => {
  const lines: Array<{ level: number, msg: string }> = []
  const sink = new Writable({ write (chunk: Buffer, _enc, cb) { for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l)); cb() } })
  const logger = pino({ level: 'debug' }, sink)
  const httpPort = await freePort()
  const h = await startHarness(t, { routing: { mode: 'hostname', httpPort, httpsPort: await freePort() }, controller: { logger, informers: { absentRetryMs: 50 } } })
  h.api.create(lbService('web', [{ name: 'http', port: 80 }]))
  await h.serveNodePorts('web')
  await waitFor(() => ingressOf(h.api, 'web').length > 0, 'status')
  t.match(await httpGet('127.0.0.1', httpPort, 3000, 'web.default.localhost'), /^node=/)
  // Discovery has been asked again a few times meanwhile.
  await waitFor(() => h.api.requests.filter((r) => r.path === '/apis' || r.path === '/apis/').length >= 3, 'discovery polled again', 5000)
  const snap = h.snapshot()
  t.same(snap.gateways, [], 'no Gateways')
  t.same(snap.gatewayApi, {}, 'nothing of the Gateway API watched')
  t.notOk(snap.informers.some((i) => i.resource.includes('gateway') || i.resource === 'namespaces'), 'no Gateway API informer')
  t.notOk(h.api.requests.some((r) => r.path.includes('gateway.networking.k8s.io')), 'no request for the Gateway API group')
  t.same(lines.filter((l) => l.level >= 40).map((l) => l.msg), [], 'no warn or error line')
})
