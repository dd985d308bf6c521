// End to end through the ListenerManager: with poolSize set, client
// connections ride sockets the backend accepted before the client came, and
// the pool refills one socket per client.

import t from 'tap'
import { countingServer, connectTo, exchange, waitFor } from './fixtures/net.js'
import { startE2EProxy } from './fixtures/proxy.js'

t.test('warm sockets serve the clients; the backend sees one refill per client', async (t) => {
  const be = await countingServer()
  t.teardown(() => be.close())
  const px = await startE2EProxy([{ host: '127.0.0.1', port: 0, routes: [], default: { id: 'web', endpoints: [be.endpoint], poolSize: 2 } }])
  t.teardown(() => px.close())
  const labels = `backend="127.0.0.1:${be.port}",upstream="web"`
  await waitFor(() => be.accepts === 2 && px.sample('kt_upstream_pool_idle', labels) === 2, 'pool warmed before any client', 3000)

  const N = 6
  for (let i = 0; i < N; i++) {
    await waitFor(() => px.sample('kt_upstream_pool_idle', labels) === 2, `refilled before client ${i}`, 3000)
    const c = await connectTo({ host: '127.0.0.1', port: px.ports[0] as number })
    const msg = `client-${i}`
    t.equal((await exchange(c, msg, msg.length)).toString(), msg, 'bytes through a warm socket')
    c.destroy()
  }
  await waitFor(() => be.accepts === 2 + N, `backend accepts: ${be.accepts} = 2 warm + ${N} refills`, 3000)
  t.equal(px.sample('kt_upstream_pool_hits_total', labels), N, 'every client was a pool hit')
  t.equal(px.sample('kt_upstream_pool_misses_total', labels), 0)
  t.ok((px.sample('kt_upstream_connect_duration_seconds_count', labels) ?? 0) >= 2 + N, 'connect latency observed for warm dials')
})

t.test('poolSize 0: every client dials, nothing is pre-connected', async (t) => {
  const be = await countingServer()
  t.teardown(() => be.close())
  const px = await startE2EProxy([{ host: '127.0.0.1', port: 0, routes: [], default: { id: 'web', endpoints: [be.endpoint], poolSize: 0 } }])
  t.teardown(() => px.close())
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal(be.accepts, 0)
  for (let i = 0; i < 3; i++) {
    const c = await connectTo({ host: '127.0.0.1', port: px.ports[0] as number })
    t.equal((await exchange(c, 'x', 1)).toString(), 'x')
    c.destroy()
  }
  t.equal(be.accepts, 3)
  t.equal(px.sample('kt_upstream_pool_hits_total', `backend="127.0.0.1:${be.port}",upstream="web"`), undefined, 'no pool, no pool metrics')
})

t.test('a table update keeps the pool of an endpoint that stays', async (t) => {
  const a = await countingServer()
  const b = await countingServer()
  t.teardown(() => Promise.all([a.close(), b.close()]))
  const listener = (endpoints: Array<{ host: string, port: number }>) => ({ host: '127.0.0.1', port: 0, routes: [], default: { id: 'web', endpoints, poolSize: 1 } })
  const px = await startE2EProxy([listener([a.endpoint])])
  t.teardown(() => px.close())
  await waitFor(() => a.accepts === 1, 'a.accepts === 1', 2000)
  // Same listener key (port 0 as in the first table): the listener is kept, the upstream updated.
  const res = await px.manager.apply({ version: 2, listeners: [listener([a.endpoint, b.endpoint])] })
  t.same(res.failed, [])
  await waitFor(() => b.accepts === 1, 'the new endpoint gets its own warm socket', 2000)
  t.equal(a.accepts, 1, 'the kept endpoint was not re-dialled')
  await px.manager.apply({ version: 3, listeners: [listener([b.endpoint])] })
  await waitFor(() => a.open.size === 0, 'a removed endpoint\'s warm socket is closed', 2000)
})
