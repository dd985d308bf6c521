// Replies are matched to the flow's backend by the address the kernel reports,
// so a backend written in a non-canonical form (0:0:0:0:0:0:0:1) still answers.
import t from 'tap'
import { ListenerManager } from '../../src/dataplane/listener-manager.js'
import { silentLogger } from '../../src/observe/logger.js'
import { Registry } from '../../src/observe/metrics.js'
import { echo, udpClient, udpServer } from './support.js'

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
