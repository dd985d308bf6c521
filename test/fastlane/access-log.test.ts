// Through the native lane: one access-log line per connection at close, with
// the same fields as the JS path (listener, client, upstream, backend,
// attempts, bytes both ways, cause), built from batched close records; the
// metrics (connections by outcome, bytes, accepted, active) match.
import t from 'tap'
import { dial, l4, readAll, startEcho, upstream, waitFor, writeRandom, hashAll } from '../support/net.js'
import { laneSkip, startLaneProxy } from './lane-proxy.js'
import { createServer, type AddressInfo } from 'node:net'
import { once } from 'node:events'

const skip = laneSkip()

t.test('access log lines and metrics', { skip }, async (t) => {
  const echo = await startEcho()
  t.teardown(() => echo.close())
  const dead = createServer().listen(0, '127.0.0.1')
  await once(dead, 'listening')
  const deadPort = (dead.address() as AddressInfo).port
  await new Promise((resolve) => dead.close(resolve))
  const px = await startLaneProxy([l4(upstream('u', deadPort, echo.port))], { accessLog: true })
  t.teardown(() => px.close())
  const host = px.hosts[0] as string
  const port = px.ports[0] as number
  const sizes = [5, 70_000, 1_000_000]
  for (const n of sizes) {
    const c = await dial(port, host)
    const got = hashAll(c)
    const sent = await writeRandom(c, n)
    c.end()
    const r = await got
    t.equal(r.sha, sent, `${n} bytes echoed intact`)
  }
  const lines = (): Array<Record<string, unknown>> => px.logs.filter((l) => l['msg'] === 'connection closed')
  await waitFor(() => lines().length === 3, 'three access-log lines', 2000)
  const ls = lines()
  for (let i = 0; i < 3; i++) {
    const l = ls[i] as Record<string, unknown>
    t.equal(l['listener'], `${host}:${port}`)
    t.equal(l['client'], '127.0.0.1')
    t.ok(typeof l['clientPort'] === 'number' && (l['clientPort'] as number) > 0)
    t.equal(l['upstream'], 'u')
    t.equal(l['backend'], `127.0.0.1:${echo.port}`)
    t.equal(l['bytesIn'], sizes[i])
    t.equal(l['bytesOut'], sizes[i])
    t.equal(l['cause'], 'eof')
    t.equal(l['module'], 'access')
  }
  t.ok(ls.some((l) => l['attempts'] === 2), 'a refused first attempt shows as attempts: 2')
  const m = px.registry
  await waitFor(() => m.counter('kt_connections_total', '').total({ outcome: 'eof' }) === 3, 'eof counted', 2000)
  t.equal(m.counter('kt_connections_accepted_total', '').total(), 3)
  const total = sizes.reduce((a, b) => a + b, 0)
  t.equal(m.counter('kt_bytes_total', '').total({ direction: 'client_to_upstream' }), total)
  t.equal(m.counter('kt_bytes_total', '').total({ direction: 'upstream_to_client' }), total)
  const text = m.render()
  t.match(text, /kt_native_accept_listeners 1/)
  t.match(text, new RegExp(`kt_active_connections\\{listener="${host.replace(/\./g, '\\.')}:${port}"\\} 0`))
  t.match(text, /kt_upstream_connect_errors_total\{[^}]*code="ECONNREFUSED"[^}]*\} [1-9]/)
  const snap = px.manager.snapshot()
  t.equal(snap.listeners[0]?.accepted, 3, 'status sees the lane counters')
  // A connection still open shows as active.
  const open = await dial(port, host)
  open.write('x')
  await once(open, 'data')
  t.equal(px.manager.connectionCount, 1)
  t.match(m.render(), /kt_active_connections\{[^}]*\} 1/)
  open.end()
  t.equal((await readAll(open)).length, 0)
})
