// status shows UDP listeners: the Service's `ip:port/udp` address, hostname-mode
// `name:port/udp`, and one `flows` line per UDP listener (issue #16).
import t from 'tap'
import { deriveServices, parseUpstreamId } from '../../src/app/status.js'
import { formatListeners } from '../../src/app/render.js'
import type { DataplaneSnapshot } from '../../src/dataplane/listener-manager.js'
import type { RouteTable } from '../../src/routing/types.js'

const tcpUp = { id: 'kind/default/dns:53', endpoints: [{ host: '172.18.0.2', port: 30053 }] }
const udpUp = { id: 'kind/default/dns:53/udp', endpoints: [{ host: '172.18.0.2', port: 30053 }], poolSize: 0 }
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

t.test('UDP upstream ids parse to the Service port', async (t) => {
  t.same(parseUpstreamId('kind/default/dns:53/udp'), { cluster: 'kind', namespace: 'default', name: 'dns', port: 53 })
  t.same(parseUpstreamId('kind/default/dns:53'), { cluster: 'kind', namespace: 'default', name: 'dns', port: 53 })
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
