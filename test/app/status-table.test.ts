// Bug 2 of issue 12: `status`'s table listed a Service's addresses and its
// backends as two independent lists, so with two ports `IP:5201` stood on the
// line of the backend `node:30080`. Each address must stand beside the
// backends of its own port; `--json` (deriveServices) was already right.
import t from 'tap'
import { deriveServices, type UpStatus } from '../../src/app/status.js'
import { formatStatus, formatTable } from '../../src/app/render.js'
import type { DataplaneSnapshot } from '../../src/dataplane/listener-manager.js'
import type { RouteTable, UpstreamSpec } from '../../src/routing/types.js'

const IP = '127.0.10.5'
const nodes = ['172.18.0.2', '172.18.0.3']
const up = (port: number, nodePort: number): UpstreamSpec => ({ id: `kind/default/perf:${port}`, service: { cluster: 'kind', namespace: 'default', name: 'perf', port }, endpoints: nodes.map((host) => ({ host, port: nodePort })) })

function statusOf (table: RouteTable, snap: DataplaneSnapshot, extra: Partial<UpStatus> = {}): UpStatus {
  return {
    pid: 1, startedAt: '2026-01-01T00:00:00Z', stateDir: '/s', address: 'both', listenHost: '127.0.0.1', ready: true, version: 1,
    clusters: [{ name: 'kind', mode: 'direct', reason: 'test', synced: true }],
    services: deriveServices(table, snap, { listenHost: '127.0.0.1', httpsPort: 8443 }),
    listeners: snap.listeners, conflicts: [], totals: { active: 0, accepted: 0, bytesIn: 0, bytesOut: 0, poolHits: 0, poolMisses: 0 },
    ...extra,
  }
}

function listener (host: string, port: number, def: UpstreamSpec): DataplaneSnapshot['listeners'][number] {
  return { key: `${host}:${port}`, name: `${host}:${port}`, port, owner: 'default/perf', active: 0, accepted: 0, bytesIn: 0, bytesOut: 0, routes: [], default: def.id, path: 'js', pathReason: 'test' }
}

t.test('each address stands beside the backends of its own port', async (t) => {
  const web = up(80, 30080)
  const perf = up(5201, 30201)
  const table: RouteTable = { version: 1, listeners: [{ host: IP, port: 80, routes: [], default: web }, { host: IP, port: 5201, routes: [], default: perf }] }
  const snap: DataplaneSnapshot = {
    version: 1,
    active: 0,
    listeners: [listener(IP, 80, web), listener(IP, 5201, perf)],
    upstreams: [web, perf].map((u) => ({ id: u.id, backends: u.endpoints.map((e) => ({ key: `${e.host}:${e.port}`, available: true, active: 0 }) as never) })),
  }
  const lines = formatTable(statusOf(table, snap), 200)
  t.comment(lines.join('\n'))
  const header = lines[0] as string
  const col = (name: string): number => header.indexOf(name)
  const cell = (line: string, name: string, next: string): string => line.slice(col(name), col(next)).trim()
  // Follow the ADDRESS column down: every non-empty address owns the BACKENDS
  // cells from its line to the next address.
  let current = ''
  const pairs: Array<[string, string]> = []
  for (const l of lines.slice(1)) {
    const a = cell(l, 'ADDRESS', 'HOSTNAME')
    if (a !== '') current = a
    const b = cell(l, 'BACKENDS', 'HEALTH')
    if (b !== '') pairs.push([current, b])
  }
  t.same(pairs.sort(), [
    [`${IP}:5201`, '172.18.0.2:30201'],
    [`${IP}:5201`, '172.18.0.3:30201'],
    [`${IP}:80`, '172.18.0.2:30080'],
    [`${IP}:80`, '172.18.0.3:30080'],
  ], 'IP:80 with the :30080 backends, IP:5201 with the :30201 ones')
})

t.test('a hostname-mode port stands beside its backends too', async (t) => {
  const web = up(80, 30080)
  const table: RouteTable = { version: 1, listeners: [{ host: '127.0.0.1', port: 8080, routes: [{ names: ['perf.default.localhost'], upstream: web }] }] }
  const snap: DataplaneSnapshot = {
    version: 1,
    active: 0,
    listeners: [{ ...listener('127.0.0.1', 8080, web), routes: ['perf.default.localhost'] }],
    upstreams: [{ id: web.id, backends: web.endpoints.map((e) => ({ key: `${e.host}:${e.port}`, available: true, active: 0 }) as never) }],
  }
  const text = formatStatus(statusOf(table, snap), 200).join('\n')
  t.match(text, /http:\/\/perf\.default\.localhost:8080\s+172\.18\.0\.2:30080/)
})

t.test('each relay shows its data path and its pool\'s hit rate', async (t) => {
  const empty: DataplaneSnapshot = { version: 1, active: 0, listeners: [], upstreams: [] }
  const st = statusOf({ version: 1, listeners: [] }, empty, {
    clusters: [
      { name: 'mac', mode: 'relay', reason: 'test', synced: true, relay: { name: 'kind-tunnel-relay-mac', port: 41000, pool: { idle: 6, target: 6, hits: 870, misses: 130, hitRate: 0.87, dataPath: 'native' } } },
      { name: 'win', mode: 'relay', reason: 'test', synced: true, relay: { name: 'kind-tunnel-relay-win', port: 41001, pool: { idle: 2, target: 2, hits: 0, misses: 0, hitRate: 0, dataPath: 'js' } } },
      { name: 'mux', mode: 'relay', reason: 'test', synced: true, relay: { name: 'kind-tunnel-relay-mux', port: 41002, pool: { idle: 2, target: 2, hits: 0, misses: 0, hitRate: 0, dataPath: 'js', transport: 'mux', mux: { state: 'live', carriers: 2, streams: 5, opened: 900 } } } },
      { name: 'auto', mode: 'relay', reason: 'test', synced: true, relay: { name: 'kind-tunnel-relay-auto', port: 41004, pool: { idle: 2, target: 2, hits: 40, misses: 0, hitRate: 1, dataPath: 'native', transport: 'pool', auto: true, autoMuxRate: 20 } } },
      { name: 'busy', mode: 'relay', reason: 'test', synced: true, relay: { name: 'kind-tunnel-relay-busy', port: 41005, pool: { idle: 2, target: 2, hits: 120, misses: 4, hitRate: 0.97, dataPath: 'native', transport: 'mux', auto: true, destinationsOnMux: 1, autoMuxRate: 20, mux: { state: 'live', carriers: 2, streams: 31, opened: 5000 } } } },
      { name: 'lane', mode: 'relay', reason: 'test', synced: true, relay: { name: 'kind-tunnel-relay-lane', port: 41006, pool: { idle: 2, target: 2, hits: 9, misses: 0, hitRate: 1, dataPath: 'native', acceptPath: 'native', transport: 'pool', auto: true, autoMuxRate: 400 } } },
      { name: 'old', mode: 'relay', reason: 'test', synced: true, relay: { name: 'kind-tunnel-relay-old', port: 41003, pool: { idle: 2, target: 2, hits: 3, misses: 0, hitRate: 1, dataPath: 'js', transport: 'pool', mux: { state: 'unsupported', carriers: 0, streams: 0, opened: 0 } } } },
    ],
  })
  const text = formatStatus(st, 200).join('\n')
  t.match(text, /cluster mac: relay, relay kind-tunnel-relay-mac on 127\.0\.0\.1:41000, data path native, pool 6 idle \(target 6\), hit rate 87% \(870 of 1000\)/)
  t.match(text, /cluster win: relay, relay kind-tunnel-relay-win on 127\.0\.0\.1:41001, data path js, pool 2 idle \(target 2\), no dials yet/)
  t.match(text, /relay kind-tunnel-relay-mux on 127\.0\.0\.1:41002, data path js, transport mux \(2 connections, 5 streams open, 900 opened\), pool 2 idle/, 'the transport each relay uses')
  t.match(text, /relay kind-tunnel-relay-auto on 127\.0\.0\.1:41004, data path native, transport auto: pool \(mux from 20 new connections\/s to a destination\), pool 2 idle \(target 2\), hit rate 100%/, 'auto says which transport it uses now')
  t.match(text, /relay kind-tunnel-relay-busy on 127\.0\.0\.1:41005, data path native, transport auto: mux for 1 destination, pool for the rest \(mux from 20 new connections\/s to a destination; 2 connections, 31 streams open, 5000 opened\), pool 2 idle/)
  t.match(text, /relay kind-tunnel-relay-lane on 127\.0\.0\.1:41006, data path native \(native accept\), transport auto: pool \(mux from 400 new connections\/s to a destination\), pool 2 idle/, 'a relay whose addon accepts says so')
  t.match(text, /relay kind-tunnel-relay-old on 127\.0\.0\.1:41003, data path js, transport pool \(mux unsupported\), pool 2 idle \(target 2\), hit rate 100%/)
})
