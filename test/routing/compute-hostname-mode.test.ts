import t from 'tap'
import { computeRoutes, PORT_ERROR_SHADOWED } from '../../src/routing/compute.js'
import type { ObservedState, RoutingOptions } from '../../src/routing/compute.js'
import { ingress, ingressClass, svc, tcp, KIND_NODES } from './compute-fixtures.js'

function run (o: Partial<ObservedState>, opts: RoutingOptions = {}) {
  return computeRoutes({ cluster: 'kind', nodes: KIND_NODES, services: [], ...o }, opts)
}
const summary = (r: ReturnType<typeof run>) => r.table.listeners.map((l) => ({
  at: `${l.host}:${l.port}`,
  default: l.default?.id,
  routes: l.routes.map((x) => `${x.names.join('|')}=>${x.upstream.id}`),
}))

t.test('hostname is the default mode; a lone Service is each shared port\'s default, plain L4', async (t) => {
  const r = run({ services: [svc('web', { ports: [tcp(80, 30080, { name: 'http' }), tcp(443, 30443, { name: 'https' }), tcp(9000, 30900)] })] })
  t.same(summary(r), [
    { at: '127.0.0.1:8080', default: 'kind/default/web:80', routes: [] },
    { at: '127.0.0.1:8443', default: 'kind/default/web:443', routes: [] },
    { at: '127.0.0.1:9000', default: 'kind/default/web:9000', routes: [] },
  ])
  const p = r.services[0]
  t.equal(p?.hostname, 'web.default.localhost')
  t.same(p?.hostnames, ['web.default.localhost'])
  t.equal(p?.ip, undefined)
  t.same(p?.ingress, [{ hostname: 'web.default.localhost', ports: [{ port: 80, protocol: 'TCP' }, { port: 443, protocol: 'TCP' }, { port: 9000, protocol: 'TCP' }] }])
  t.same(p?.ports.map((x) => x.listeners), [['127.0.0.1:8080'], ['127.0.0.1:8443'], ['127.0.0.1:9000']])
  t.equal(r.allocations.size, 0, 'no IP is allocated in hostname mode')
})

t.test('two Services on a shared port route by name and the port has no default', async (t) => {
  const r = run({
    services: [
      svc('web', { ports: [tcp(443, 30443, { name: 'https' })], annotations: { 'kind-tunnel.dev/hostnames': 'www.example.test' } }),
      svc('api', { ns: 'prod', ports: [tcp(8443, 31443, { appProtocol: 'https' })] }),
    ],
  })
  t.same(summary(r), [{
    at: '127.0.0.1:8443',
    default: undefined,
    routes: [
      'web.default.localhost|www.example.test=>kind/default/web:443',
      'api.prod.localhost=>kind/prod/api:8443',
    ],
  }])
  t.equal(r.table.listeners[0]?.owner, 'default/web,prod/api')
})

t.test('ports are classed by appProtocol, then name, then number', async (t) => {
  const r = run({
    services: [svc('mix', {
      ports: [
        tcp(8000, 30001, { appProtocol: 'HTTPS' }),
        tcp(9090, 30002, { name: 'http-admin' }),
        tcp(50051, 30003, { name: 'grpc', appProtocol: 'kubernetes.io/h2c' }),
        tcp(443, 30004, { appProtocol: 'http', name: 'web' }),
      ],
    })],
  })
  t.same(r.services[0]?.ports.map((p) => [p.port, p.listeners[0]]), [
    [8000, '127.0.0.1:8443'],
    [9090, '127.0.0.1:9090'], // the HTTP listener went to 443 (appProtocol http), which ranks first
    [50051, '127.0.0.1:50051'],
    [443, '127.0.0.1:8080'],
  ])
  const tls = run({ services: [svc('t', { ports: [tcp(6443, 30005, { name: 'tls-api' }), tcp(8001, 30006, { appProtocol: 'tls' })] })] })
  t.same(tls.services[0]?.ports.map((p) => p.listeners[0]), ['127.0.0.1:8443', '127.0.0.1:8001'])
})

t.test('a second port of the same class falls back to its own port, or is shadowed', async (t) => {
  const r = run({
    services: [svc('two', { ports: [tcp(8444, 30001, { name: 'https-admin' }), tcp(443, 30002, { name: 'https' })] })],
  })
  t.same(r.services[0]?.ports.map((p) => [p.port, p.listeners]), [[8444, ['127.0.0.1:8444']], [443, ['127.0.0.1:8443']]], '443 ranks first for the shared listener')
  const clash = run({ services: [svc('clash', { ports: [tcp(443, 30001, { name: 'https' }), tcp(8443, 30002, { name: 'https-alt' })] })] })
  const ports = clash.services[0]?.ports
  t.same(ports?.map((p) => [p.port, p.status, p.error]), [[443, 'served', undefined], [8443, 'unsupported', PORT_ERROR_SHADOWED]])
  t.same(clash.services[0]?.ingress[0]?.ports, [{ port: 443, protocol: 'TCP' }, { port: 8443, protocol: 'TCP', error: PORT_ERROR_SHADOWED }])
  const both = run({ services: [svc('clash', { ports: [tcp(443, 30001, { name: 'https' }), tcp(8443, 30002, { name: 'https-alt' })] })] }, { mode: 'both', ipPool: '127.240.0.0/24' })
  t.equal(both.services[0]?.ports[1]?.status, 'served', 'in both mode the port is still reachable on the Service IP')
  t.same(both.services[0]?.ports[1]?.listeners, ['127.240.0.1:8443'])
})

t.test('annotation hostnames are normalised; invalid ones are warned about and skipped', async (t) => {
  const r = run({
    services: [
      svc('web', { annotations: { 'kind-tunnel.dev/hostnames': ' Api.Example.TEST., *.apps.test,,bad_name, 1.2.3.4, a.*.test, api.example.test' } }),
      svc('other', { ports: [tcp(80, 30081, { name: 'http' })] }),
    ],
  })
  const web = r.services.find((p) => p.key === 'default/web')
  t.same(web?.hostnames, ['*.apps.test', 'api.example.test', 'web.default.localhost'])
  t.same(web?.findings.filter((e) => e.reason === 'InvalidHostname').length, 3)
  t.same(r.table.listeners[0]?.routes.find((x) => x.upstream.id === 'kind/default/web:80')?.names, ['*.apps.test', 'api.example.test', 'web.default.localhost'])
})

t.test('name conflicts: the older Service wins, the loser is warned once', async (t) => {
  const r = run({
    services: [
      svc('young', { created: '2025-03-01T00:00:00Z', ports: [tcp(80, 30001, { name: 'http' }), tcp(443, 30002, { name: 'https' })], annotations: { 'kind-tunnel.dev/hostnames': 'shared.test' } }),
      svc('old', { created: '2025-01-01T00:00:00Z', ports: [tcp(80, 30003, { name: 'http' }), tcp(443, 30004, { name: 'https' })], annotations: { 'kind-tunnel.dev/hostnames': 'shared.test' } }),
    ],
  })
  for (const l of r.table.listeners) {
    t.same(l.routes.find((x) => x.names.includes('shared.test'))?.upstream.id.split(':')[0], 'kind/default/old', `${l.port}`)
    t.equal(l.routes.filter((x) => x.names.includes('shared.test')).length, 1)
  }
  const young = r.services.find((p) => p.key === 'default/young')
  t.same(young?.hostnames, ['young.default.localhost'])
  t.equal(young?.findings.filter((e) => e.reason === 'HostnameConflict').length, 1, 'one event, though two listeners')
  t.same(r.services.find((p) => p.key === 'default/old')?.findings.filter((e) => e.reason === 'HostnameConflict'), [])
})

t.test('same creation time: namespace/name decides', async (t) => {
  const r = run({
    services: [
      svc('b', { annotations: { 'kind-tunnel.dev/hostnames': 'x.test' } }),
      svc('a', { annotations: { 'kind-tunnel.dev/hostnames': 'x.test' } }),
    ],
  })
  t.ok(r.services.find((p) => p.key === 'default/a')?.hostnames.includes('x.test'))
  t.notOk(r.services.find((p) => p.key === 'default/b')?.hostnames.includes('x.test'))
})

t.test('a Service always keeps its own generated name, even against an older claim', async (t) => {
  const r = run({
    services: [
      svc('squatter', { created: '2024-01-01T00:00:00Z', annotations: { 'kind-tunnel.dev/hostnames': 'web.default.localhost' } }),
      svc('web', { created: '2025-01-01T00:00:00Z' }),
    ],
  })
  t.same(r.services.find((p) => p.key === 'default/web')?.hostnames, ['web.default.localhost'])
  t.same(r.services.find((p) => p.key === 'default/squatter')?.findings.map((e) => e.reason).filter((x) => x === 'HostnameConflict'), ['HostnameConflict'])
})

t.test('Ingress hosts attach to the Service annotated with their class', async (t) => {
  const r = run({
    services: [svc('ingress-nginx-controller', {
      ns: 'ingress-nginx',
      ports: [tcp(80, 30080, { name: 'http' }), tcp(443, 30443, { name: 'https' })],
      annotations: { 'kind-tunnel.dev/ingress-class': 'nginx' },
    }), svc('web')],
    ingressClasses: [ingressClass('nginx', {}, true), ingressClass('other')],
    ingresses: [
      ingress('app', 'default', 'nginx', ['App.Test', '*.wild.test', '', 'bad host']),
      ingress('elsewhere', 'default', 'other', ['other.test']),
      ingress('classless', 'team', undefined, ['default.test']),
      { metadata: { name: 'legacy', namespace: 'x', annotations: { 'kubernetes.io/ingress.class': 'nginx' } }, spec: { ingressClassName: undefined as unknown as string, rules: [{ host: 'legacy.test' }] } },
      { metadata: { name: 'gone', namespace: 'x', deletionTimestamp: '2025-01-01T00:00:00Z' }, spec: { ingressClassName: 'nginx', rules: [{ host: 'gone.test' }] } },
    ],
  })
  const ctl = r.services.find((p) => p.key === 'ingress-nginx/ingress-nginx-controller')
  t.same(ctl?.hostnames, ['*.wild.test', 'app.test', 'default.test', 'ingress-nginx-controller.ingress-nginx.localhost', 'legacy.test'])
  t.equal(ctl?.findings.filter((e) => e.reason === 'InvalidHostname').length, 1)
  const https = r.table.listeners.find((l) => l.port === 8443)
  t.ok(https?.default, 'alone on 8443')
  const http = r.table.listeners.find((l) => l.port === 8080)
  t.same(http?.routes.map((x) => x.upstream.id), ['kind/default/web:80', 'kind/ingress-nginx/ingress-nginx-controller:80'])
  t.ok(http?.routes[1]?.names.includes('app.test'))
})

t.test('without the annotation, Helm-style labels link a controller Service to its IngressClass', async (t) => {
  const labels = { 'app.kubernetes.io/name': 'ingress-nginx', 'app.kubernetes.io/instance': 'ingress-nginx', 'app.kubernetes.io/component': 'controller' }
  const base = {
    ingressClasses: [
      ingressClass('nginx', { 'app.kubernetes.io/name': 'ingress-nginx', 'app.kubernetes.io/instance': 'ingress-nginx' }),
      ingressClass('nginx-other', { 'app.kubernetes.io/name': 'ingress-nginx', 'app.kubernetes.io/instance': 'second' }),
      ingressClass('unlabelled'),
    ],
    ingresses: [
      ingress('a', 'default', 'nginx', ['a.test']),
      ingress('b', 'default', 'nginx-other', ['b.test']),
      ingress('c', 'default', 'unlabelled', ['c.test']),
    ],
  }
  const r = run({ ...base, services: [svc('ctl', { ns: 'ingress-nginx', labels })] })
  t.same(r.services[0]?.hostnames, ['a.test', 'ctl.ingress-nginx.localhost'])
  const notController = run({ ...base, services: [svc('ctl', { ns: 'ingress-nginx', labels: { ...labels, 'app.kubernetes.io/component': 'admission' } })] })
  t.same(notController.services[0]?.hostnames, ['ctl.ingress-nginx.localhost'])
  const explicit = run({ ...base, services: [svc('ctl', { ns: 'ingress-nginx', labels, annotations: { 'kind-tunnel.dev/ingress-class': 'unlabelled' } })] })
  t.same(explicit.services[0]?.hostnames, ['c.test', 'ctl.ingress-nginx.localhost'], 'the annotation replaces label matching')
})

t.test('source ranges on a shared listener: per route, and on the listener only if every route has some', async (t) => {
  const r = run({
    services: [
      svc('a', { spec: { loadBalancerSourceRanges: ['10.0.0.0/8'] } }),
      svc('b'),
    ],
  })
  const l = r.table.listeners[0]
  t.equal(l?.sourceRanges, undefined)
  t.same(l?.routes.map((x) => [x.upstream.id, x.sourceRanges]), [['kind/default/a:80', ['10.0.0.0/8']], ['kind/default/b:80', undefined]])
  const all = run({
    services: [
      svc('a', { spec: { loadBalancerSourceRanges: ['10.0.0.0/8'] } }),
      svc('b', { spec: { loadBalancerSourceRanges: ['127.0.0.0/8', '10.0.0.0/8'] } }),
    ],
  })
  t.same(all.table.listeners[0]?.sourceRanges, ['10.0.0.0/8', '127.0.0.0/8'])
  const alone = run({ services: [svc('a', { spec: { loadBalancerSourceRanges: ['10.0.0.0/8'] } })] })
  t.same(alone.table.listeners[0]?.sourceRanges, ['10.0.0.0/8'])
})

t.test('listen host, ports and suffix are configurable', async (t) => {
  const r = run({ services: [svc('web', { ports: [tcp(80, 30080), tcp(443, 30443)] })] }, { listenHost: '127.0.0.2', httpPort: 80, httpsPort: 443, hostnameSuffix: 'Kind.Test' })
  t.same(r.table.listeners.map((l) => `${l.host}:${l.port}`), ['127.0.0.2:80', '127.0.0.2:443'])
  t.equal(r.services[0]?.hostname, 'web.default.kind.test')
})

t.test('a plain port shared by two Services routes by name with no default', async (t) => {
  const r = run({ services: [svc('pg1', { ports: [tcp(5432, 30001)] }), svc('pg2', { ports: [tcp(5432, 30002)] })] })
  t.same(summary(r), [{ at: '127.0.0.1:5432', default: undefined, routes: ['pg1.default.localhost=>kind/default/pg1:5432', 'pg2.default.localhost=>kind/default/pg2:5432'] }])
})
