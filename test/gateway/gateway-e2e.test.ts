// Gateway API names end to end: the real kubectl applies upstream-style CRDs
// and Gateway/HTTPRoute/TLSRoute YAML to the test API server; a simulated
// implementation gives each Gateway a LoadBalancer Service (no labels) and
// copies the address kind-tunnel gave it into the Gateway's status; the real
// curl reaches an HTTPRoute hostname by Host on the shared HTTP port, and
// the real openssl a TLSRoute hostname by SNI on the shared HTTPS port.

import t from 'tap'
import { readFile } from 'node:fs/promises'
import { SimGatewayController } from '../../src/sim/gateway-impl.js'
import { freePort, lbService, startHarness, waitFor } from '../control/fixtures/harness.js'
import { apply, CRDS, curlByName, kubectl, opensslByName, serveHttp, serveTls } from './fixtures/gateway.js'

const TIMINGS = { absentRetryMs: 100 }

function gatewayYaml (ns: string, name: string, listeners: string): string {
  return `apiVersion: v1
kind: Namespace
metadata:
  name: ${ns}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: ${name}
  namespace: ${ns}
spec:
  gatewayClassName: kind-tunnel-sim
  listeners:
${listeners}`
}

t.test('HTTPRoute by Host on the HTTP port, TLSRoute by SNI on the HTTPS port; a removed route loses its name live', async (t) => {
  const httpPort = await freePort()
  const httpsPort = await freePort()
  const h = await startHarness(t, { routing: { mode: 'hostname', httpPort, httpsPort }, controller: { informers: TIMINGS } })
  const impl = new SimGatewayController(h.api)
  impl.start()
  t.teardown(() => impl.stop())
  // Another Service on the shared ports, so they route by name (a lone Service would be the default).
  h.api.create(lbService('web', [{ name: 'http', port: 80 }, { name: 'https', port: 443 }]))
  await h.serveNodePorts('web')

  await apply(h.kubeconfig, h.dir, await readFile(CRDS, 'utf8'), 'crds.yaml')
  await waitFor(() => h.snapshot().gatewayApi.tlsroutes, 'TLSRoutes watched', 5000)
  t.same(h.snapshot().gatewayApi, { gateways: 'v1', httproutes: 'v1', grpcroutes: 'v1', tlsroutes: 'v1alpha2' }, 'each resource at the version served')

  await apply(h.kubeconfig, h.dir, gatewayYaml('infra', 'eg', `  - name: http
    protocol: HTTP
    port: 80
    hostname: "*.example.test"
    allowedRoutes:
      namespaces:
        from: All
  - name: tls
    protocol: TLS
    port: 443
    tls:
      mode: Passthrough
    allowedRoutes:
      namespaces:
        from: Same
`) + `---
apiVersion: v1
kind: Namespace
metadata:
  name: apps
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: app
  namespace: apps
spec:
  parentRefs:
  - name: eg
    namespace: infra
    sectionName: http
  hostnames:
  - app.example.test
  - app.other.test
  rules:
  - backendRefs:
    - name: app
      port: 8080
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata:
  name: secure
  namespace: infra
spec:
  parentRefs:
  - name: eg
    sectionName: tls
  hostnames:
  - secure.example.test
  rules:
  - backendRefs:
    - name: secure
      port: 8443
`, 'gateway.yaml')

  // The implementation made the Service (no labels); serve its NodePorts on the nodes.
  const svc = await waitFor(() => impl.service('eg', 'infra') as { metadata: { labels?: Record<string, string> }, spec: { ports: Array<{ port: number, nodePort: number }> } } | undefined, 'the Gateway Service')
  t.same(svc.metadata.labels ?? {}, {}, 'the Gateway Service has no labels to go by')
  const np = (port: number): number => svc.spec.ports.find((p) => p.port === port)?.nodePort as number
  await serveHttp(t, h.nodeIps, np(80)) // answers `node=<ip>:<port>`
  await serveTls(t, h.nodeIps, np(443), 'secure.example.test')

  const gw = await waitFor(() => h.snapshot().gateways.find((g) => g.key === 'infra/eg' && g.hostnames.some((x) => x.served) && g.hostnames.length === 2 ? g : undefined), 'the Gateway planned with its names', 8000)
  t.equal(gw.foundBy, 'address', 'found by its status address')
  t.same(gw.services, ['infra/eg-gateway'])
  t.same(gw.hostnames.map((x) => [x.name, x.scheme, x.servicePort, x.served, x.url]), [
    ['app.example.test', 'http', 80, true, `http://app.example.test:${httpPort}/`],
    ['secure.example.test', 'https', 443, true, `https://secure.example.test:${httpsPort}/`],
  ], 'listener ∩ route hostnames; app.other.test is outside *.example.test')
  t.ok(gw.problems.some((p) => p.reason === 'RouteHostnameUnmatched') === false, 'the HTTPRoute matched a listener')

  const byHost = await waitFor(async () => { const r = await curlByName('app.example.test', httpPort); return r.stdout.startsWith('node=') ? r : undefined }, 'curl by Host', 8000)
  t.match(byHost.stdout, new RegExp(`^node=[0-9.]+:${np(80)}$`), 'curl http://app.example.test reaches the Gateway Service port 80')
  t.match(await opensslByName('secure.example.test', httpsPort), /Peer certificate: CN = secure\.example\.test/, 'openssl by SNI reaches the Gateway Service port 443')
  const other = await curlByName('app.other.test', httpPort)
  t.notMatch(other.stdout, /^node=/, 'a route hostname outside the listener hostname is not routed')

  // Remove the HTTPRoute: its name goes away live.
  const del = await kubectl(h.kubeconfig, h.dir, ['-n', 'apps', 'delete', 'httproute', 'app'])
  t.equal(del.code, 0, del.stderr)
  await waitFor(() => !h.snapshot().gateways.some((g) => g.hostnames.some((x) => x.name === 'app.example.test')), 'the name gone from the plan')
  const after = await waitFor(async () => { const r = await curlByName('app.example.test', httpPort); return r.stdout.startsWith('node=') ? undefined : r }, 'curl by Host refused', 5000)
  t.notMatch(after.stdout, /^node=/, 'the removed route\'s name no longer reaches the Gateway')
  t.match(await opensslByName('secure.example.test', httpsPort), /CN = secure\.example\.test/, 'the TLSRoute still routes')
})

t.test('two Gateways in two namespaces share the HTTP port by name; a name both want goes to one, with an Event on the other Gateway', async (t) => {
  const httpPort = await freePort()
  const h = await startHarness(t, { routing: { mode: 'hostname', httpPort, httpsPort: await freePort() }, controller: { informers: TIMINGS } })
  const impl = new SimGatewayController(h.api)
  impl.start()
  t.teardown(() => impl.stop())
  await apply(h.kubeconfig, h.dir, await readFile(CRDS, 'utf8'), 'crds.yaml')
  const listener = `  - name: web
    protocol: HTTP
    port: 80
`
  const route = (ns: string, ...hosts: string[]): string => `---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: web
  namespace: ${ns}
spec:
  parentRefs:
  - name: gw
  hostnames: [${hosts.map((x) => `"${x}"`).join(', ')}]
`
  await apply(h.kubeconfig, h.dir, gatewayYaml('team-a', 'gw', listener) + route('team-a', 'a.example.test') + '---\n' + gatewayYaml('team-b', 'gw', listener) + route('team-b', 'b.example.test', 'a.example.test'), 'two.yaml')
  const svcA = await waitFor(() => impl.service('gw', 'team-a') as { spec: { ports: Array<{ nodePort: number }> } } | undefined, 'Service a')
  const svcB = await waitFor(() => impl.service('gw', 'team-b') as { spec: { ports: Array<{ nodePort: number }> } } | undefined, 'Service b')
  await h.serveNodePorts('gw-gateway', 'team-a')
  await h.serveNodePorts('gw-gateway', 'team-b')
  for (const [host, svc] of [['a.example.test', svcA], ['b.example.test', svcB]] as const) {
    const r = await waitFor(async () => { const x = await curlByName(host, httpPort); return x.stdout.startsWith('node=') ? x : undefined }, `curl ${host}`, 8000)
    t.match(r.stdout, new RegExp(`:${svc.spec.ports[0]?.nodePort ?? 0}$`), `${host} reaches its own Gateway's Service`)
  }
  t.same(h.snapshot().gateways.map((g) => [g.key, g.hostnames.map((x) => `${x.name} ${x.served ? 'served' : 'held elsewhere'}`)]), [
    ['team-a/gw', ['a.example.test served']],
    ['team-b/gw', ['a.example.test held elsewhere', 'b.example.test served']],
  ], 'the older Service (then the lower namespace/name) keeps a.example.test')
  const ev = await waitFor(async () => {
    const r = await kubectl(h.kubeconfig, h.dir, ['get', 'events', '-n', 'team-b', '--field-selector', 'involvedObject.kind=Gateway', '-o', 'jsonpath={range .items[*]}{.reason} {.involvedObject.name} {.message}{"\\n"}{end}'])
    return r.stdout.includes('HostnameConflict') ? r.stdout : undefined
  }, 'the HostnameConflict event on the Gateway', 5000)
  t.match(ev, /HostnameConflict gw hostname a\.example\.test \(HTTPRoute team-b\/web\) is already served by another Service/)
})
