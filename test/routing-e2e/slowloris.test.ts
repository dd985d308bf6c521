// Peek limits: a slowloris client is cut at the absolute deadline while others are served.
import t from 'tap'
import { connect } from 'node:net'
import { closeKind, dial, readAll, startProxy, startServer, waitFor } from '../support/net.js'

t.test('slowloris is cut at --peek-timeout, other clients are served', async (t) => {
  const be = await startServer((s) => { s.on('data', () => { s.end('ok\n') }) })
  t.teardown(() => be.close())
  const px = await startProxy([{
    host: '127.0.0.1',
    port: 0,
    routes: [{ names: ['a.test'], upstream: { id: 'a', endpoints: [{ host: '127.0.0.1', port: be.port }] } }],
  }], { peekTimeoutMs: 800 })
  t.teardown(() => px.close())
  // The slow client: one byte every 100 ms of an HTTP request that never completes.
  const slow = connect({ host: '127.0.0.1', port: px.port })
  await new Promise((resolve) => slow.once('connect', resolve))
  const slowEnd = closeKind(slow)
  const started = Date.now()
  const req = 'GET / HTTP/1.1\r\nHost: a.test\r\nX-Pad: ' + 'y'.repeat(200)
  let i = 0
  const iv = setInterval(() => { if (!slow.destroyed && i < req.length) slow.write(req[i++] as string) }, 100)
  t.teardown(() => clearInterval(iv))
  // Meanwhile a normal client is served at once.
  const c = await dial(px.port, px.host)
  c.end('GET / HTTP/1.1\r\nHost: a.test\r\n\r\n')
  t.equal((await readAll(c)).toString(), 'ok\n', 'a normal client is served during the slowloris')
  const kind = await slowEnd
  const took = Date.now() - started
  clearInterval(iv)
  t.ok(took >= 700 && took < 2000, `cut at the deadline (${took} ms, ${kind})`)
  const decisions = px.registry.counter('kt_route_decisions_total', '')
  const conns = px.registry.counter('kt_connections_total', '')
  // The decision is counted when the deadline fires, the outcome when the
  // proxy's socket emits 'close', which can come after this client already saw
  // the reset: wait for both (the count below stays exact).
  await waitFor(() => decisions.total({ outcome: 'peek_timeout' }) === 1 && conns.total({ outcome: 'peek_timeout' }) === 1, 'peek_timeout decision and outcome counted', 2000)
  t.equal(conns.total({ outcome: 'peek_timeout' }), 1, 'closed (no default route) and counted')
})

t.test('with a default route, a peek timeout goes to the default', async (t) => {
  const be = await startServer((s) => { s.end('default\n') })
  t.teardown(() => be.close())
  const px = await startProxy([{
    host: '127.0.0.1',
    port: 0,
    routes: [{ names: ['a.test'], upstream: { id: 'a', endpoints: [{ host: '127.0.0.1', port: 1 }] } }],
    default: { id: 'd', endpoints: [{ host: '127.0.0.1', port: be.port }] },
  }], { peekTimeoutMs: 300 })
  t.teardown(() => px.close())
  // A server-speaks-first protocol: the client sends nothing.
  const c = await dial(px.port, px.host)
  const got = readAll(c)
  t.equal((await got).toString(), 'default\n')
  c.end()
})
