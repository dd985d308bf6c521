// Replies are matched to the flow's backend by the address the kernel reports,
// so a backend written in a non-canonical form (0:0:0:0:0:0:0:1) still answers.
import t from 'tap'
import { ListenerManager } from '../../src/dataplane/listener-manager.js'
import { silentLogger } from '../../src/observe/logger.js'
import { Registry } from '../../src/observe/metrics.js'
import { echo, udpClient, udpServer } from './support.js'
import { Socket as DgramSocket } from 'node:dgram'
import { onLinkSource } from '../../src/dataplane/udp/source.js'

t.test('an IPv6 backend in long form', async (t) => {
  const srv = await udpServer(echo, '::1')
  const m = new ListenerManager({ logger: silentLogger(), metrics: new Registry(), options: { accessLog: false } })
  const res = await m.apply({ version: 1, listeners: [{ host: '::1', port: 0, protocol: 'udp', routes: [], default: { id: 'v6', endpoints: [{ host: '0:0:0:0:0:0:0:1', port: srv.port }] } }] })
  const c = await udpClient('::1')
  t.teardown(async () => { c.close(); await m.close(0); await srv.close() })
  c.send('long form', (res.bound[0] as { port: number }).port, '::1')
  t.equal((await c.waitCount(1))[0]?.toString(), 'long form')
  c.send('again', (res.bound[0] as { port: number }).port, '::1')
  t.equal((await c.waitCount(2))[1]?.toString(), 'again')
})

t.test('no flow socket is unbound (wildcard) when it connects, not even a backend\'s first', async (t) => {
  // Record each dgram connect's local address at the moment connect() is called:
  // an unbound socket would be bound to 0.0.0.0 by the kernel.
  const seen: string[] = []
  const orig = DgramSocket.prototype.connect
  DgramSocket.prototype.connect = function (this: DgramSocket, ...args: unknown[]) {
    try { seen.push(this.address().address) } catch { seen.push('unbound') }
    return (orig as (...a: unknown[]) => void).apply(this, args)
  } as typeof orig
  t.teardown(() => { DgramSocket.prototype.connect = orig })
  const srv = await udpServer(echo)
  const m = new ListenerManager({ logger: silentLogger(), metrics: new Registry(), options: { accessLog: false } })
  const res = await m.apply({ version: 1, listeners: [{ host: '127.0.0.1', port: 0, protocol: 'udp', routes: [], default: { id: 'first', endpoints: [{ host: '127.0.0.1', port: srv.port }] } }] })
  const a = await udpClient()
  const b = await udpClient()
  t.teardown(async () => { a.close(); b.close(); await m.close(0); await srv.close() })
  a.send('first flow', (res.bound[0] as { port: number }).port)
  await a.waitCount(1)
  b.send('second flow', (res.bound[0] as { port: number }).port)
  await b.waitCount(1)
  t.same(seen, ['127.0.0.1', '127.0.0.1'], 'both flows bound 127.0.0.1 before connecting')
})

t.test('onLinkSource: loopback, this host\'s own address, an on-link subnet; a routed address is left to the kernel', async (t) => {
  const ifaces = {
    lo: [{ address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/8' }],
    br0: [
      { address: '172.18.0.1', netmask: '255.255.0.0', family: 'IPv4', mac: '02:42:00:00:00:01', internal: false, cidr: '172.18.0.1/16' },
      { address: 'fc00:f853:ccd:e793::1', netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '02:42:00:00:00:01', internal: false, cidr: 'fc00:f853:ccd:e793::1/64', scopeid: 0 },
      { address: 'fe80::1', netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '02:42:00:00:00:01', internal: false, cidr: 'fe80::1/64', scopeid: 5 },
    ],
  } as unknown as Parameters<typeof onLinkSource>[1]
  t.equal(onLinkSource('127.0.0.1', ifaces), '127.0.0.1')
  t.equal(onLinkSource('127.0.0.9', ifaces), '127.0.0.1')
  t.equal(onLinkSource('::1', ifaces), '::1')
  t.equal(onLinkSource('0:0:0:0:0:0:0:1', ifaces), '::1')
  t.equal(onLinkSource('172.18.0.3', ifaces), '172.18.0.1', 'a kind node on the bridge')
  t.equal(onLinkSource('172.18.0.1', ifaces), '172.18.0.1', 'the host itself')
  t.equal(onLinkSource('fc00:f853:ccd:e793::3', ifaces), 'fc00:f853:ccd:e793::1')
  t.equal(onLinkSource('fe80::2', ifaces), undefined, 'link-local: needs a scope, left to the kernel')
  t.equal(onLinkSource('10.9.9.9', ifaces), undefined, 'routed')
  t.equal(onLinkSource('not-an-ip', ifaces), undefined)
})
