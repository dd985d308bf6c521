// Source ranges are read once, where a table enters the data plane: an
// address, or ADDRESS/PREFIX with a decimal prefix. Anything looser (a zone
// index, a spaced or hex prefix) fails that listener with KT_ERR_INVALID_CIDR,
// so the JS path's BlockList and the native lane read the same ranges.
import t from 'tap'
import { ListenerManager } from '../../src/dataplane/listener-manager.js'
import { silentLogger } from '../../src/observe/logger.js'
import { Registry } from '../../src/observe/metrics.js'

t.test('loose range syntax fails the listener with a stable code', async (t) => {
  const mgr = new ListenerManager({ logger: silentLogger(), metrics: new Registry() })
  t.teardown(() => mgr.close(0))
  const u = { id: 'u', endpoints: [{ host: '127.0.0.1', port: 9 }] }
  const good = ['127.0.0.1', '127.0.0.0/8', '::1', 'fd00::/8', '0.0.0.0/0']
  const bad = ['fe80::1%eth0/64', 'fe80::1%1', '10.0.0.0/ 8', '10.0.0.0/0x8', '10.0.0.0/8.0', '10.0.0.0/33', '::/129', '10.0.0.0/', 'nope']
  const listeners = [...good, ...bad].map((r, i) => ({ host: '127.0.0.1', port: 0, routes: [], default: u, sourceRanges: [r], owner: String(i) }))
  const res = await mgr.apply({ version: 1, listeners: listeners.map((l, i) => ({ ...l, host: `127.0.1.${i + 1}` })) })
  t.equal(res.bound.length, good.length, `accepted: ${good.join(' ')}`)
  t.equal(res.failed.length, bad.length, 'every loose range refused')
  t.ok(res.failed.every((f) => f.code === 'KT_ERR_INVALID_CIDR'), res.failed.map((f) => f.message).join('; '))
})
