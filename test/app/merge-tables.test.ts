// mergeTables: per-cluster tables into one; listeners with the same key merge
// their routes, conflicts are reported, never silently dropped. Table tests.
import t from 'tap'
import { type ClusterTable, mergeTables } from '../../src/routing/merge.js'
import type { ListenerSpec, RouteTable, UpstreamSpec } from '../../src/routing/types.js'

const up = (id: string, port = 30000): UpstreamSpec => ({ id, endpoints: [{ host: '172.18.0.2', port }] })
const table = (...listeners: ListenerSpec[]): RouteTable => ({ version: 1, listeners })
const l4 = (host: string, port: number, id: string, owner: string, extra: Partial<ListenerSpec> = {}): ListenerSpec => ({ host, port, routes: [], default: up(id), owner, ...extra })

t.test('disjoint listeners pass through untouched, sorted by address then port', async (t) => {
  const a = table(l4('127.240.0.2', 80, 'a/default/web:80', 'default/web'))
  const b = table(l4('127.240.128.1', 443, 'b/default/api:443', 'default/api'), l4('127.0.0.1', 8080, 'b/default/api:80', 'default/api'))
  const r = mergeTables([{ cluster: 'b', table: b }, { cluster: 'a', table: a }], { version: 7 })
  t.equal(r.table.version, 7)
  t.same(r.table.listeners.map((l) => `${l.host}:${l.port}`), ['127.0.0.1:8080', '127.240.0.2:80', '127.240.128.1:443'])
  t.same(r.table.listeners[1], a.listeners[0], 'same object content')
  t.same(r.conflicts, [])
  t.same(r.owners.get('127.0.0.1:8080'), ['b'])
})

t.test('two L4 listeners on a shared port: both get their generated names, the first cluster keeps the default', async (t) => {
  const a = table(l4('127.0.0.1', 8080, 'a/default/web:80', 'default/web'))
  const b = table(l4('127.0.0.1', 8080, 'b/shop/cart:80', 'shop/cart'))
  const r = mergeTables([{ cluster: 'b', table: b }, { cluster: 'a', table: a }], { version: 1 })
  t.equal(r.table.listeners.length, 1)
  const l = r.table.listeners[0] as ListenerSpec
  t.equal(l.default?.id, 'a/default/web:80', 'cluster a sorts first')
  t.same(l.routes.map((x) => [x.upstream.id, x.names]), [['a/default/web:80', ['web.default.localhost']], ['b/shop/cart:80', ['cart.shop.localhost']]])
  t.equal(r.conflicts.length, 1)
  t.equal(r.conflicts[0]?.kind, 'default')
  t.equal(r.conflicts[0]?.winner, 'a/default/web:80')
  t.equal(r.conflicts[0]?.loser, 'b/shop/cart:80')
  t.same(r.owners.get('127.0.0.1:8080'), ['a', 'b'])
  t.match(l.owner, /a:default\/web/)
})

t.test('the same hostname in two clusters, nothing else to go by: the first cluster (by name) wins, the other is reported', async (t) => {
  const shared = (id: string, names: string[]): ListenerSpec => ({ host: '127.0.0.1', port: 8443, routes: [{ names, upstream: up(id) }], owner: id })
  const a = table(shared('a/default/web:443', ['web.default.localhost', 'app.test']))
  const b = table(shared('b/default/web:443', ['web.default.localhost', 'b-only.test']))
  const r = mergeTables([{ cluster: 'a', table: a }, { cluster: 'b', table: b }], { version: 1 })
  const l = r.table.listeners[0] as ListenerSpec
  t.same(l.routes.map((x) => [x.upstream.id, x.names]), [['a/default/web:443', ['app.test', 'web.default.localhost']], ['b/default/web:443', ['b-only.test']]])
  t.equal(l.default, undefined)
  t.same(r.conflicts.map((c) => [c.kind, c.name, c.winner, c.loser]), [['hostname', 'web.default.localhost', 'a/default/web:443', 'b/default/web:443']])
})

t.test('a hostname two clusters claim goes by the in-cluster rule: own generated name, then the older Service, then the cluster name', async (t) => {
  const svcUp = (cluster: string, ns: string, name: string, created: string): UpstreamSpec =>
    ({ id: `${cluster}/${ns}/${name}:443`, service: { cluster, namespace: ns, name, port: 443, created }, endpoints: [{ host: '172.18.0.2', port: 30443 }] })
  const on = (u: UpstreamSpec, names: string[]): ListenerSpec => ({ host: '127.0.0.1', port: 8443, routes: [{ names, upstream: u }], owner: u.id })
  // Older Service in the later cluster: it keeps the name (was: cluster a, by cluster order).
  let r = mergeTables([
    { cluster: 'a', table: table(on(svcUp('a', 'default', 'young', '2025-03-01T00:00:00Z'), ['shared.test'])) },
    { cluster: 'b', table: table(on(svcUp('b', 'default', 'old', '2025-01-01T00:00:00Z'), ['shared.test'])) },
  ], { version: 1 })
  t.same(r.conflicts.map((c) => [c.name, c.winner, c.loser]), [['shared.test', 'b/default/old:443', 'a/default/young:443']])
  t.same((r.table.listeners[0] as ListenerSpec).routes.map((x) => [x.upstream.id, x.names]), [['b/default/old:443', ['shared.test']]])
  // A name that is one Service's generated name stays with it, even against an older claimant.
  r = mergeTables([
    { cluster: 'a', table: table(on(svcUp('a', 'default', 'other', '2024-01-01T00:00:00Z'), ['web.default.localhost'])) },
    { cluster: 'b', table: table(on(svcUp('b', 'default', 'web', '2025-06-01T00:00:00Z'), ['web.default.localhost'])) },
  ], { version: 1 })
  t.same(r.conflicts.map((c) => [c.name, c.winner, c.loser]), [['web.default.localhost', 'b/default/web:443', 'a/default/other:443']])
  // Same Service, same age, in two clusters: the cluster name decides, whatever the input order.
  const same = (cl: string): ClusterTable => ({ cluster: cl, table: table(on(svcUp(cl, 'default', 'web', '2025-01-01T00:00:00Z'), ['web.default.localhost'])) })
  for (const order of [[same('b'), same('a')], [same('a'), same('b')]]) {
    r = mergeTables(order, { version: 1 })
    t.same(r.conflicts.map((c) => [c.winner, c.loser]), [['a/default/web:443', 'b/default/web:443']])
  }
})

t.test('a default with source ranges is never the default of a shared port; it keeps its ranges on its name route', async (t) => {
  const a = table(l4('127.0.0.1', 8080, 'a/default/private:80', 'default/private', { sourceRanges: ['10.0.0.0/8'] }))
  const b = table(l4('127.0.0.1', 8080, 'b/default/public:80', 'default/public'))
  const r = mergeTables([{ cluster: 'a', table: a }, { cluster: 'b', table: b }], { version: 1 })
  const l = r.table.listeners[0] as ListenerSpec
  t.equal(l.default?.id, 'b/default/public:80', 'the unranged one is the default')
  const priv = l.routes.find((x) => x.upstream.id === 'a/default/private:80')
  t.same(priv?.sourceRanges, ['10.0.0.0/8'])
  t.same(priv?.names, ['private.default.localhost'])
  t.equal(l.sourceRanges, undefined, 'no listener-wide filter unless every part is ranged')
  t.ok(r.conflicts.some((c) => c.kind === 'default' && c.loser === 'a/default/private:80'))
})

t.test('listener-wide ranges survive only when every part has them (the union); caps take the minimum', async (t) => {
  const a = table(l4('127.0.0.1', 8080, 'a/x/one:80', 'x/one', { sourceRanges: ['10.0.0.0/8'], maxConnections: 50 }))
  const b = table(l4('127.0.0.1', 8080, 'b/x/two:80', 'x/two', { sourceRanges: ['192.168.0.0/16'], maxConnections: 20 }))
  const l = mergeTables([{ cluster: 'a', table: a }, { cluster: 'b', table: b }], { version: 1 }).table.listeners[0] as ListenerSpec
  t.same(l.sourceRanges, ['10.0.0.0/8', '192.168.0.0/16'])
  t.equal(l.maxConnections, 20)
})

t.test('pure and deterministic: input order does not matter', async (t) => {
  const a = table(l4('127.0.0.1', 8080, 'a/default/web:80', 'default/web'), l4('127.240.0.1', 80, 'a/default/web:80', 'default/web'))
  const b = table(l4('127.0.0.1', 8080, 'b/default/web:80', 'default/web'))
  const c = table({ host: '127.0.0.1', port: 8080, routes: [{ names: ['*.apps.test'], upstream: up('c/ing/nginx:80') }], owner: 'ing/nginx' })
  const one = mergeTables([{ cluster: 'a', table: a }, { cluster: 'b', table: b }, { cluster: 'c', table: c }], { version: 3 })
  const two = mergeTables([{ cluster: 'c', table: c }, { cluster: 'b', table: b }, { cluster: 'a', table: a }], { version: 3 })
  t.same(one, two)
  // a and b both generate web.default.localhost: b loses the name and the default.
  t.same(one.conflicts.map((x) => `${x.kind} ${x.loser}`).sort(), ['default b/default/web:80', 'hostname b/default/web:80'])
})

t.test('a custom hostname suffix names the L4 Services', async (t) => {
  const a = table(l4('127.0.0.1', 8080, 'a/default/web:80', 'default/web'))
  const b = table(l4('127.0.0.1', 8080, 'b/default/api:80', 'default/api'))
  const l = mergeTables([{ cluster: 'a', table: a }, { cluster: 'b', table: b }], { version: 1, hostnameSuffix: 'kind.test' }).table.listeners[0] as ListenerSpec
  t.same(l.routes.flatMap((r) => r.names).sort(), ['api.default.kind.test', 'web.default.kind.test'])
})
