// status shows UDP listeners: the Service's `ip:port/udp` address, hostname-mode
// `name:port/udp`, and one `flows` line per UDP listener (issue #16).
import t from 'tap'
import { deriveServices } from '../../src/app/status.js'
import { computeRoutes } from '../../src/routing/compute.js'
import { formatListeners } from '../../src/app/render.js'
import type { DataplaneSnapshot } from '../../src/dataplane/listener-manager.js'
import type { RouteTable } from '../../src/routing/types.js'

const dns = { cluster: 'kind', namespace: 'default', name: 'dns', port: 53 }
const tcpUp = { id: 'kind/default/dns:53', service: dns, endpoints: [{ host: '172.18.0.2', port: 30053 }] }
const udpUp = { id: 'kind/default/dns:53/udp', service: dns, endpoints: [{ host: '172.18.0.2', port: 30053 }], poolSize: 0 }
const table: RouteTable = {
  version: 1,
  listeners: [
    { host: '127.240.0.1', port: 53, routes: [], default: tcpUp },
    { host: '127.240.0.1', port: 53, protocol: 'udp', routes: [], default: udpUp },
    { host: '127.0.0.1', port: 53, protocol: 'udp', routes: [], default: udpUp },
  ],
}
const listener = (key: string, name: string, extra: Record<string, unknown> = {}): DataplaneSnapshot['listeners'][number] =>
  ({ key, name, port: 53, owner: 'default/dns', active: 0, accepted: 0, bytesIn: 0, bytesOut: 0, routes: [], default: undefined, path: 'js', ...extra }) as DataplaneSnapshot['listeners'][number]
const snap: DataplaneSnapshot = {
  version: 1,
  active: 2,
  listeners: [
    listener('127.240.0.1:53', '127.240.0.1:53'),
    listener('127.240.0.1:53/udp', '127.240.0.1:53/udp', { protocol: 'udp', active: 2, accepted: 7 }),
    listener('127.0.0.1:53/udp', '127.0.0.1:53/udp', { protocol: 'udp' }),
  ],
  upstreams: [{ id: udpUp.id, backends: [{ key: '172.18.0.2:30053', active: 2, available: true, healthy: true, ejected: false, lastFailure: undefined, poolIdle: 0, poolHits: 0, poolMisses: 0 }] }],
}

t.test('TCP and UDP upstreams carry their Service port as a structured reference (no id is parsed back)', async (t) => {
  const svc = {
    metadata: { name: 'dns', namespace: 'default', uid: 'u1', creationTimestamp: '2026-01-01T00:00:00Z' },
    spec: { type: 'LoadBalancer', ports: [{ port: 53, protocol: 'TCP', nodePort: 30053 }, { port: 53, protocol: 'UDP', nodePort: 30054 }] },
  }
  const node = { metadata: { name: 'n1' }, status: { conditions: [{ type: 'Ready', status: 'True' }], addresses: [{ type: 'InternalIP', address: '172.18.0.2' }] } }
  const r = computeRoutes({ cluster: 'kind', services: [svc], nodes: [node] }, { mode: 'ip', ipPool: '127.240.0.0/24' })
  t.same(r.table.listeners.map((l) => [l.default?.id, l.default?.service]).sort((a, b) => String(a[0]).localeCompare(String(b[0]))), [
    ['kind/default/dns:53', { ...dns, created: '2026-01-01T00:00:00Z' }],
    ['kind/default/dns:53/udp', { ...dns, created: '2026-01-01T00:00:00Z' }],
  ])
})

t.test('a Service with TCP and UDP 53: both addresses, the UDP one marked /udp, none unbound', async (t) => {
  const [s] = deriveServices(table, snap, { listenHost: '127.0.0.1', httpsPort: 443 })
  t.same(s?.addresses, ['127.0.0.1:53/udp', '127.240.0.1:53', '127.240.0.1:53/udp'])
  t.same(s?.hostnames, [], 'UDP is never shown as a name: datagrams are not routed by name')
  t.same(s?.unbound, [])
  t.same(s?.ports.map((p) => p.listener), ['127.0.0.1:53/udp', '127.240.0.1:53', '127.240.0.1:53/udp'])
  t.equal(s?.backends[0]?.active, 2, 'flows count as the backend\'s active users')
})

t.test('the listeners block: one flows line per UDP listener', async (t) => {
  const lines = formatListeners({ listeners: snap.listeners } as Parameters<typeof formatListeners>[0])
  t.match(lines.join('\n'), /127\.240\.0\.1:53\/udp\s+2 flows, 7 started, udp \(node:dgram\)/)
})
