// Gateway API rules in computeRoutes (pure): hostname intersection,
// parentRefs sectionName/port, allowedRoutes From Same/All/Selector and kinds,
// the order in which the Service is found (annotation, address, labels), a
// name two Gateways want (the existing merge rule, with an event), and what
// `status` and `doctor` make of the result.

import t from 'tap'
import { formatGateways } from '../../src/app/gateways.js'
import { checkGateways, gatewayHostnamesToResolve } from '../../src/doctor/gateways.js'
import { computeRoutes } from '../../src/routing/compute.js'
import { intersectHostnames, type KubeGateway, type KubeGatewayListener, type KubeParentRef, type KubeRoute } from '../../src/routing/gateway.js'
import { node, svc, tcp } from '../routing/compute-fixtures.js'

const opts = { mode: 'hostname' as const, httpPort: 8080, httpsPort: 8443 }
const nodes = [node('n1')]

function gw (ns: string, name: string, listeners: readonly KubeGatewayListener[], address?: string, cls = 'eg'): KubeGateway {
  return { metadata: { name, namespace: ns, creationTimestamp: '2025-01-01T00:00:00Z' }, spec: { gatewayClassName: cls, listeners }, ...(address !== undefined ? { status: { addresses: [{ type: 'Hostname', value: address }] } } : {}) }
}
function route (ns: string, name: string, parentRefs: readonly KubeParentRef[], hostnames: string[]): KubeRoute {
  return { metadata: { name, namespace: ns, creationTimestamp: '2025-01-01T00:00:00Z' }, spec: { parentRefs, hostnames } }
}

t.test('hostname intersection follows Gateway API', async (t) => {
  t.equal(intersectHostnames(undefined, 'a.test'), 'a.test')
  t.equal(intersectHostnames('a.test', 'a.test'), 'a.test')
  t.equal(intersectHostnames('a.test', 'b.test'), undefined)
  t.equal(intersectHostnames('*.example.test', 'x.example.test'), 'x.example.test')
  t.equal(intersectHostnames('*.example.test', 'a.b.example.test'), 'a.b.example.test', 'a wildcard covers one or more labels')
  t.equal(intersectHostnames('*.example.test', 'example.test'), undefined, 'but not the bare suffix')
  t.equal(intersectHostnames('x.example.test', '*.example.test'), 'x.example.test')
  t.equal(intersectHostnames('*.example.test', '*.a.example.test'), '*.a.example.test', 'the narrower wildcard')
  t.equal(intersectHostnames('*.a.example.test', '*.example.test'), '*.a.example.test')
  t.equal(intersectHostnames('*.a.test', '*.b.test'), undefined)
})

t.test('parentRefs, allowedRoutes and kinds', async (t) => {
  const services = [svc('eg-svc', { ns: 'infra', ports: [tcp(80, 30080, { name: 'http' }), tcp(443, 30443, { name: 'https' })] })]
  const gateway = gw('infra', 'eg', [
    { name: 'web', protocol: 'HTTP', port: 80, allowedRoutes: { namespaces: { from: 'Selector', selector: { matchLabels: { shared: 'yes' } } } } },
    { name: 'tls', protocol: 'TLS', port: 443, hostname: 'secure.test' },
  ], 'eg-svc.infra.localhost')
  const r = computeRoutes({
    cluster: 'c',
    services,
    nodes,
    gatewayApi: {
      gateways: [gateway],
      namespaces: [{ metadata: { name: 'apps', labels: { shared: 'yes' } } }, { metadata: { name: 'other' } }],
      httpRoutes: [
        route('apps', 'ok', [{ name: 'eg', namespace: 'infra' }], ['app.test']),
        route('other', 'not-selected', [{ name: 'eg', namespace: 'infra' }], ['nope.test']),
        route('apps', 'wrong-section', [{ name: 'eg', namespace: 'infra', sectionName: 'tls' }], ['wrong.test']),
        route('apps', 'wrong-port', [{ name: 'eg', namespace: 'infra', port: 8080 }], ['port.test']),
        route('apps', 'other-gateway', [{ name: 'other', namespace: 'infra' }], ['else.test']),
      ],
      tlsRoutes: [
        route('infra', 'secure', [{ name: 'eg' }], ['secure.test', 'outside.test']),
        route('apps', 'cross-ns', [{ name: 'eg', namespace: 'infra' }], ['secure.test']),
      ],
    },
  }, opts)
  const g = r.gateways[0]
  t.equal(g?.foundBy, 'address')
  t.same(g?.hostnames.map((h) => `${h.scheme} ${h.name} ${h.route}`), ['http app.test HTTPRoute apps/ok', 'https secure.test TLSRoute infra/secure'])
  const http = r.table.listeners.find((l) => l.port === 8080)
  t.ok(http?.default !== undefined || http?.routes.some((x) => x.names.includes('app.test')), 'app.test reaches the Service on 8080')
  t.same(r.services[0]?.hostnames, ['app.test', 'eg-svc.infra.localhost', 'secure.test'])
  t.same(gatewayHostnamesToResolve({ clusters: [{ name: 'c', mode: 'direct', reason: '', synced: true, controller: { gateways: r.gateways } }] }).map((x) => x.name), ['app.test', 'secure.test'])
})

t.test('the Service: annotation first, then address, then labels; a contested name follows the merge rule', async (t) => {
  const older = '2025-01-01T00:00:00Z'
  const newer = '2025-02-01T00:00:00Z'
  const services = [
    svc('labelled', { ns: 'a', created: older, labels: { 'gateway.networking.k8s.io/gateway-name': 'gw' }, ports: [tcp(80, 30001, { name: 'http' })] }),
    svc('by-address', { ns: 'a', created: older, ports: [tcp(80, 30002, { name: 'http' })] }),
    svc('envoy', { ns: 'envoy-gateway-system', created: newer, labels: { 'gateway.envoyproxy.io/owning-gateway-name': 'gw', 'gateway.envoyproxy.io/owning-gateway-namespace': 'b' }, ports: [tcp(80, 30003, { name: 'http' })] }),
    svc('explicit', { ns: 'c', created: newer, annotations: { 'kind-tunnel.dev/ingress-class': 'traefik' }, ports: [tcp(80, 30004, { name: 'http' })] }),
  ]
  const listeners = [{ name: 'web', protocol: 'HTTP', port: 80 }]
  const r = computeRoutes({
    cluster: 'c',
    services,
    nodes,
    gatewayApi: {
      gateways: [
        gw('a', 'gw', listeners, 'by-address.a.localhost'),
        gw('b', 'gw', listeners),
        gw('c', 'gw', listeners, undefined, 'traefik'),
      ],
      httpRoutes: [
        route('a', 'r', [{ name: 'gw' }], ['shared.test']),
        route('b', 'r', [{ name: 'gw' }], ['shared.test', 'b.test']),
        route('c', 'r', [{ name: 'gw' }], ['c.test', 'nowhere.test']),
      ],
    },
  }, opts)
  const by = Object.fromEntries(r.gateways.map((g) => [g.key, [g.services.join(','), g.foundBy]]))
  t.same(by, { 'a/gw': ['a/by-address', 'address'], 'b/gw': ['envoy-gateway-system/envoy', 'labels'], 'c/gw': ['c/explicit', 'annotation'] }, 'the address beats the labels on another Service; labels across namespaces; the annotation names the class')
  const b = r.gateways.find((g) => g.key === 'b/gw')
  t.same(b?.hostnames.map((h) => [h.name, h.served]), [['b.test', true], ['shared.test', false]], 'the older Service keeps shared.test')
  t.ok(r.services.find((s) => s.key === 'envoy-gateway-system/envoy')?.findings.some((e) => e.reason === 'HostnameConflict' && e.message.includes('shared.test')), 'the loser gets a HostnameConflict event')
  t.ok(r.gateways.find((g) => g.key === 'b/gw')?.problems.some((p) => p.reason === 'NoAddress'), 'a Gateway without status.addresses is flagged')

  const st = { clusters: [{ name: 'kind', mode: 'direct', reason: '', synced: true, controller: { gateways: r.gateways } }] }
  const text = formatGateways(st).join('\n')
  t.match(text, /kind\/a\/gw, class eg → Service a\/by-address \(found by address\)/)
  t.match(text, /http:\/\/b\.test:8080\/ {2}HTTPRoute b\/r, listener web/)
  t.match(text, /shared\.test:8080\/ {2}HTTPRoute b\/r, listener web {2}\(not routed/)
  const doc = checkGateways(st)
  t.ok(doc.some((l) => l.status === 'warn' && /Gateway b\/gw has no status\.addresses/.test(l.message)), 'doctor: no address')
  t.ok(doc.some((l) => l.status === 'warn' && /shared\.test .* held by another Service or cluster/.test(l.message)), 'doctor: name held elsewhere')
  t.same(checkGateways({ clusters: [] }).map((l) => l.status), ['ok'])
  // A name lost to another cluster on the shared port (up's merge rule).
  const merged = { ...st, conflicts: [{ listener: '127.0.0.1:8080', kind: 'hostname' as const, name: 'b.test', winner: 'alpha/x/y:80', loser: 'kind/envoy-gateway-system/envoy:80', message: 'b.test is already served' }] }
  t.match(formatGateways(merged).join('\n'), /b\.test:8080\/ {2}HTTPRoute b\/r, listener web {2}\(not routed/, 'status marks a name another cluster holds')
})

t.test('GRPCRoute on an HTTPS listener gives an SNI name; a route its implementation rejected gives none', async (t) => {
  const rejected: KubeRoute = {
    ...route('a', 'rejected', [{ name: 'gw' }], ['no.test']),
    status: { parents: [{ parentRef: { name: 'gw' }, conditions: [{ type: 'Accepted', status: 'False' }] }] },
  }
  const r = computeRoutes({
    cluster: 'c',
    services: [svc('s', { ns: 'a', ports: [tcp(443, 30443, { name: 'https' }), tcp(80, 30080, { name: 'http' })] })],
    nodes,
    gatewayApi: {
      gateways: [gw('a', 'gw', [{ name: 'https', protocol: 'HTTPS', port: 443, hostname: '*.grpc.test' }, { name: 'http', protocol: 'HTTP', port: 80 }], 's.a.localhost')],
      grpcRoutes: [route('a', 'api', [{ name: 'gw', sectionName: 'https' }], ['api.grpc.test'])],
      httpRoutes: [rejected],
    },
  }, opts)
  t.same(r.gateways[0]?.hostnames.map((h) => `${h.scheme} ${h.name} ${h.servicePort} ${h.route}`), ['https api.grpc.test 443 GRPCRoute a/api'])
  const https = r.table.listeners.find((l) => l.port === 8443)
  t.equal(https?.default?.id, 'c/a/s:443', 'the Service alone on 8443: every name reaches it')
  t.same(r.services[0]?.hostnames, ['api.grpc.test', 's.a.localhost'])
})

t.test('doctor flags a route hostname that matches no listener', async (t) => {
  const r = computeRoutes({
    cluster: 'c',
    services: [svc('s', { ns: 'a', ports: [tcp(80, 30001, { name: 'http' })] })],
    nodes,
    gatewayApi: {
      gateways: [gw('a', 'gw', [{ name: 'web', protocol: 'HTTP', port: 80, hostname: '*.apps.test' }], 's.a.localhost')],
      httpRoutes: [route('a', 'off', [{ name: 'gw' }], ['www.elsewhere.test'])],
    },
  }, opts)
  const lines = checkGateways({ clusters: [{ name: 'kind', mode: 'direct', reason: '', synced: true, controller: { gateways: r.gateways } }] })
  t.ok(lines.some((l) => /HTTPRoute a\/off: hostnames www\.elsewhere\.test match no listener hostname/.test(l.message)), lines.map((l) => l.message).join('\n'))
})
