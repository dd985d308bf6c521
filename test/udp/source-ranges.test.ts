// UDP source ranges: checked per datagram with the TCP listeners' BlockList
// (same CIDR checks), including after a reload narrows them (issue #16).
import t from 'tap'
import { ListenerManager } from '../../src/dataplane/listener-manager.js'
import { silentLogger } from '../../src/observe/logger.js'
import { Registry } from '../../src/observe/metrics.js'
import type { ListenerSpec } from '../../src/routing/types.js'
import { waitFor } from '../support/net.js'
import { echo, udpClient, udpServer } from './support.js'

function udpListener (host: string, backendPort: number, backendHost: string, extra: Partial<ListenerSpec> = {}): ListenerSpec {
  return { host, port: 0, protocol: 'udp', routes: [], default: { id: `u-${host}`, endpoints: [{ host: backendHost, port: backendPort }] }, ...extra }
}

async function plane (listeners: ListenerSpec[]): Promise<{ m: ListenerManager, reg: Registry, port: (i: number) => number }> {
  const reg = new Registry()
  const m = new ListenerManager({ logger: silentLogger(), metrics: reg, options: { accessLog: false } })
  const res = await m.apply({ version: 1, listeners })
  if (res.failed.length > 0) throw new Error(JSON.stringify(res.failed))
  return { m, reg, port: (i) => (res.bound.find((b) => b.key.startsWith(listeners[i]?.host.includes(':') === true ? `[${listeners[i]?.host ?? ''}]` : `${listeners[i]?.host ?? ''}:`)) as { port: number }).port }
}

function drops (reg: Registry, reason: string): number {
  const line = reg.render().split('\n').find((l) => l.startsWith('kt_udp_drops_total{') && l.includes(`reason="${reason}"`) && !l.endsWith(' 0'))
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1))
}

t.test('only clients inside the ranges get a flow; others are dropped and counted', async (t) => {
  const srv = await udpServer(echo)
  const { m, reg, port } = await plane([udpListener('127.0.0.1', srv.port, '127.0.0.1', { sourceRanges: ['127.0.0.2/32', '10.0.0.0/8'] })])
  const inside = await udpClient('127.0.0.2')
  const outside = await udpClient('127.0.0.3')
  t.teardown(async () => { inside.close(); outside.close(); await m.close(0); await srv.close() })
  inside.send('in', port(0), '127.0.0.1')
  t.equal((await inside.waitCount(1))[0]?.toString(), 'in')
  for (let i = 0; i < 3; i++) outside.send('out', port(0), '127.0.0.1')
  await waitFor(() => drops(reg, 'source_denied') === 3, 'three source_denied drops', 5000)
  t.equal(outside.inbox.length, 0, 'nothing reached the client outside the ranges')
  t.equal(srv.received.length, 1, 'the backend saw only the allowed datagram')
  t.equal(m.udp.flowCount, 1, 'no flow for a denied client')

  // Narrowing the ranges applies to the next datagram of an open flow.
  await m.apply({ version: 2, listeners: [udpListener('127.0.0.1', srv.port, '127.0.0.1', { sourceRanges: ['10.0.0.0/8'] })] })
  inside.send('again', port(0), '127.0.0.1')
  await waitFor(() => drops(reg, 'source_denied') === 4, 'the open flow\'s next datagram denied', 5000)
  t.equal(srv.received.length, 1)
  // Widening it again lets the same flow through.
  await m.apply({ version: 3, listeners: [udpListener('127.0.0.1', srv.port, '127.0.0.1', { sourceRanges: ['127.0.0.0/8'] })] })
  inside.send('back', port(0), '127.0.0.1')
  t.equal((await inside.waitCount(2))[1]?.toString(), 'back')
})

t.test('IPv6: ranges by family, an IPv4 range never admits ::1', async (t) => {
  const srv = await udpServer(echo, '::1')
  const { m, reg, port } = await plane([udpListener('::1', srv.port, '::1', { sourceRanges: ['127.0.0.0/8'] })])
  const c = await udpClient('::1')
  t.teardown(async () => { c.close(); await m.close(0); await srv.close() })
  c.send('v6', port(0), '::1')
  await waitFor(() => drops(reg, 'source_denied') === 1, 'the v6 datagram denied', 5000)
  await m.apply({ version: 2, listeners: [udpListener('::1', srv.port, '::1', { sourceRanges: ['::1/128'] })] })
  c.send('v6 allowed', port(0), '::1')
  t.equal((await c.waitCount(1))[0]?.toString(), 'v6 allowed')
})

t.test('a bad CIDR fails the listener with KT_ERR_INVALID_CIDR, as for TCP', async (t) => {
  const reg = new Registry()
  const m = new ListenerManager({ logger: silentLogger(), metrics: reg, options: { accessLog: false } })
  t.teardown(async () => { await m.close(0) })
  const res = await m.apply({ version: 1, listeners: [udpListener('127.0.0.1', 9, '127.0.0.1', { sourceRanges: ['10.0.0.0/33'] }), udpListener('127.0.0.1', 9, '127.0.0.1', { port: 0, host: '127.0.0.2', sourceRanges: ['fe80::1%eth0/64'] })] })
  t.same(res.failed.map((f) => f.code), ['KT_ERR_INVALID_CIDR', 'KT_ERR_INVALID_CIDR'])
  t.equal(res.bound.length, 0)
})

t.test('a UDP listener behind a dialer that carries no datagrams is refused with KT_ERR_UDP_RELAY, not served into the void', async (t) => {
  // A TCP-only dialer (the relay carries UDP: test/relay/udp).
  const tcpOnly = { dial: async () => { throw new Error('never dialled') } }
  const m = new ListenerManager({ logger: silentLogger(), metrics: new Registry(), options: { accessLog: false }, dialers: new Map([['relay:kind', tcpOnly]]) })
  t.teardown(async () => { await m.close(0) })
  const res = await m.apply({ version: 1, listeners: [{ host: '127.0.0.1', port: 0, protocol: 'udp', routes: [], default: { id: 'r/udp', endpoints: [{ host: '172.18.0.2', port: 30053 }], dialer: 'relay:kind' } }] })
  t.same(res.failed.map((f) => f.code), ['KT_ERR_UDP_RELAY'])
  t.equal(res.bound.length, 0)
})
