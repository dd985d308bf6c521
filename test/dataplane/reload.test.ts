// The ListenerManager applies a table as a diff: unchanged listeners are
// never rebound, removed ones stop accepting, the same table twice changes nothing.
import t from 'tap'
import { ListenerManager } from '../../src/dataplane/listener-manager.js'
import { silentLogger } from '../../src/observe/logger.js'
import { Registry } from '../../src/observe/metrics.js'
import type { ListenerSpec } from '../../src/routing/types.js'
import { dial, readAll, startServer, upstream } from '../support/net.js'

t.test('diff apply', async (t) => {
  const a = await startServer((s) => { s.end('A') })
  const b = await startServer((s) => { s.end('B') })
  t.teardown(() => Promise.all([a.close(), b.close()]))
  const mgr = new ListenerManager({ logger: silentLogger(), metrics: new Registry(), options: { accessLog: false } })
  t.teardown(() => mgr.close(100))
  // A port-0 spec keeps its key ("127.0.0.1:0") across applies, so it is the same listener.
  const L1: ListenerSpec = { host: '127.0.0.1', port: 0, routes: [], default: upstream('u', a.port) }
  const r1 = await mgr.apply({ version: 1, listeners: [L1] })
  const p1 = (r1.bound[0] as { port: number }).port
  const l1 = mgr.listeners.get('127.0.0.1:0')
  const server1 = l1?.server
  const fd1 = (server1 as unknown as { _handle?: { fd?: number } } | undefined)?._handle?.fd
  // Same table again: nothing changes.
  const r3 = await mgr.apply({ version: 3, listeners: [L1] })
  t.same(r3.bound, [])
  t.same(r3.removed, [])
  t.same(r3.kept, ['127.0.0.1:0'])
  // Open a connection, then change the backend of that listener: the listener is kept, not rebound.
  const held = await dial(p1)
  const heldData = readAll(held)
  const r4 = await mgr.apply({ version: 4, listeners: [{ ...L1, default: upstream('u', b.port) }, { host: '127.0.0.2', port: 0, routes: [], default: upstream('v', b.port) }] })
  t.same(r4.kept, ['127.0.0.1:0'])
  t.equal(r4.bound.length, 1, 'a new listener was bound')
  const l1b = mgr.listeners.get('127.0.0.1:0')
  t.equal(l1b?.server, server1, 'same server object')
  t.equal((l1b?.server as unknown as { _handle?: { fd?: number } })._handle?.fd, fd1, 'same file descriptor')
  t.equal((await heldData).toString(), 'A', 'the open connection was undisturbed')
  const c = await dial(p1)
  t.equal((await readAll(c)).toString(), 'B', 'new connections use the new backend')
  // Remove the first listener: it stops accepting.
  const r5 = await mgr.apply({ version: 5, listeners: [{ host: '127.0.0.2', port: 0, routes: [], default: upstream('v', b.port) }] })
  t.same(r5.removed, ['127.0.0.1:0'])
  t.same(r5.kept, ['127.0.0.2:0'])
  const refused = await new Promise<string>((resolve) => {
    dial(p1).then((s) => { s.destroy(); resolve('connected') }, (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'))
  })
  t.equal(refused, 'ECONNREFUSED')
})

t.test('a listener that cannot bind is reported, others still bind', async (t) => {
  const a = await startServer((s) => { s.end('A') })
  t.teardown(() => a.close())
  const mgr = new ListenerManager({ logger: silentLogger(), metrics: new Registry(), options: { accessLog: false } })
  t.teardown(() => mgr.close(100))
  const res = await mgr.apply({ version: 1, listeners: [
    { host: '127.0.0.1', port: a.port, routes: [], default: upstream('u', a.port) },
    { host: '127.0.0.1', port: 0, routes: [], default: upstream('u', a.port) },
  ] })
  t.equal(res.failed.length, 1)
  t.equal(res.failed[0]?.code, 'EADDRINUSE')
  t.equal(res.bound.length, 1)
})
