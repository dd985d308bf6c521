// The Gateway API installed after `up`, at TLSRoute v1 (newer bundles): its
// resources are found by discovery and a TLSRoute v1 name routes; the
// TLSRoute CRD removed: the name goes, quietly (no warn or error line).

import t from 'tap'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { gatewayApiCrds, SimGatewayController } from '../../src/sim/gateway-impl.js'
import { freePort, startHarness, waitFor } from '../control/fixtures/harness.js'

t.test('TLSRoute v1 found by discovery; removing its CRD takes the name away', async (t) => {
  const lines: Array<{ level: number, msg: string }> = []
  const sink = new Writable({ write (chunk: Buffer, _enc, cb) { for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l)); cb() } })
  const h = await startHarness(t, { routing: { mode: 'hostname', httpPort: await freePort(), httpsPort: await freePort() }, controller: { logger: pino({ level: 'debug' }, sink), informers: { absentRetryMs: 100 } } })
  t.same(h.snapshot().gatewayApi, {}, 'nothing before the CRDs')
  const impl = new SimGatewayController(h.api)
  impl.start()
  t.teardown(() => impl.stop())
  for (const crd of gatewayApiCrds({ tlsRouteVersion: 'v1' })) h.api.create(crd)
  await waitFor(() => h.snapshot().gatewayApi.tlsroutes === 'v1', 'TLSRoute v1 watched', 5000)
  h.api.create({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'gw', namespace: 'default' }, spec: { gatewayClassName: 'kind-tunnel-sim', listeners: [{ name: 'tls', protocol: 'TLS', port: 443, tls: { mode: 'Passthrough' } }] } })
  h.api.create({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'TLSRoute', metadata: { name: 'db', namespace: 'default' }, spec: { parentRefs: [{ name: 'gw' }], hostnames: ['db.example.test'] } })
  const g = await waitFor(() => h.snapshot().gateways.find((x) => x.hostnames.some((n) => n.name === 'db.example.test' && n.served)), 'the TLSRoute v1 name', 8000)
  t.equal(g.hostnames[0]?.route, 'TLSRoute default/db')
  t.equal(g.hostnames[0]?.scheme, 'https')
  const https = h.snapshot().services.find((s) => s.key === 'default/gw-gateway')
  t.ok(https?.hostnames.includes('db.example.test'), 'the Service answers for it')

  h.api.delete('customresourcedefinitions', 'tlsroutes.gateway.networking.k8s.io')
  await waitFor(() => h.snapshot().gatewayApi.tlsroutes === undefined, 'TLSRoutes no longer watched', 5000)
  await waitFor(() => !h.snapshot().services.find((s) => s.key === 'default/gw-gateway')?.hostnames.includes('db.example.test'), 'the name gone', 5000)
  t.same(lines.filter((l) => l.level >= 40).map((l) => l.msg), [], 'no warn or error line')
})
