// Pooling, proven at the backend: sockets are connected before any client
// asks, each is used for exactly one client, and the pool refills behind it.

import t from 'tap'
import type { Socket } from 'node:net'
import { Pool } from '../../src/dataplane/pool.js'
import { Registry } from '../../src/observe/metrics.js'
import { countingServer, dialTcp, exchange, waitFor } from './fixtures/net.js'

function acquire (p: Pool): Promise<Socket | undefined> {
  return new Promise((resolve) => p.acquire(resolve))
}

t.test('warm sockets are pre-connected and each serves one client', async (t) => {
  // The backend numbers its accepts, per client port.
  const acceptNo = new Map<number, number>()
  const be = await countingServer((s, n) => { acceptNo.set(s.remotePort ?? -1, n); s.pipe(s) })
  t.teardown(() => be.close())
  const metrics = new Registry()
  const pool = new Pool(be.endpoint, { size: 2, dial: dialTcp, upstream: 'default/web:http', metrics })
  t.teardown(() => pool.close())
  pool.start()
  // The client side of a connect completes before the server's accept event
  // runs, so wait for both ends: an extra connect would still show as 3.
  await waitFor(() => pool.idle === 2 && be.accepts >= 2, 'filled to size, accepted at the backend', 2000)
  t.equal(be.accepts, 2, 'the backend accepted exactly the warm sockets')

  const used = new Set<Socket>()
  for (let i = 0; i < 5; i++) {
    await waitFor(() => pool.idle === 2 && be.accepts >= 2 + i, `refilled before take ${i}, accepted at the backend`, 2000)
    const acceptsWhenAsked = be.accepts
    const s = await acquire(pool)
    t.ok(s, `hit ${i}`)
    if (s === undefined) continue
    const no = acceptNo.get(s.localPort ?? -2)
    t.ok(no !== undefined && no <= acceptsWhenAsked, 'taking does not connect: the backend accepted this socket before the client asked')
    t.notOk(used.has(s), 'never the same socket twice')
    used.add(s)
    const echo = await exchange(s, `ping ${i}`, 6)
    t.equal(echo.toString(), `ping ${i}`, 'bytes flow on the warm socket')
    s.destroy()
  }
  await waitFor(() => pool.idle === 2 && be.accepts >= 2 + 5, 'refilled after the last take', 2000)
  t.equal(be.accepts, 2 + 5, 'one refill per take, nothing more')
  t.equal(pool.hits, 5)
  t.equal(pool.misses, 0)
  const text = metrics.render()
  t.match(text, /kt_upstream_pool_hits_total\{backend="127\.0\.0\.1:\d+",upstream="default\/web:http"\} 5/)
  t.match(text, /kt_upstream_pool_idle\{backend="127\.0\.0\.1:\d+",upstream="default\/web:http"\} 2/)
})

t.test('an empty pool is a miss, counted; size 0 never connects', async (t) => {
  const be = await countingServer()
  t.teardown(() => be.close())
  const off = new Pool(be.endpoint, { size: 0, dial: dialTcp })
  t.teardown(() => off.close())
  off.start()
  t.equal(await acquire(off), undefined)
  t.equal(off.misses, 1)
  t.equal(off.take(), undefined)
  t.equal(off.misses, 2)
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal(be.accepts, 0, 'size 0 disables the pool')

  const one = new Pool(be.endpoint, { size: 1, dial: dialTcp })
  t.teardown(() => one.close())
  one.start()
  await waitFor(() => one.idle === 1, 'one.idle === 1', 2000)
  const [a, b] = await Promise.all([acquire(one), acquire(one)])
  t.ok(a)
  t.equal(b, undefined, 'a second client in the same tick finds the pool empty: a miss')
  t.equal(one.hits, 1)
  t.equal(one.misses, 1)
  a?.destroy()
})

t.test('a taken socket has not consumed server-sent bytes and resumes cleanly', async (t) => {
  // The backend writes only after it reads, so nothing arrives while idle; the
  // socket comes back paused, with none of the pool's listeners left on it.
  const be = await countingServer()
  t.teardown(() => be.close())
  const pool = new Pool(be.endpoint, { size: 1, dial: dialTcp })
  t.teardown(() => pool.close())
  pool.start()
  await waitFor(() => pool.idle === 1, 'pool.idle === 1', 2000)
  const s = await acquire(pool)
  t.ok(s)
  if (s === undefined) return
  t.equal(s.isPaused(), true, 'paused')
  t.equal(s.listenerCount('readable'), 0)
  t.equal(s.listenerCount('error'), 0, 'no error listener of ours left: the caller owns the socket')
  const big = Buffer.alloc(256 * 1024, 7)
  const got = await exchange(s, big, big.length, 5000)
  t.equal(got.length, big.length)
  t.ok(got.equals(big), 'all bytes back')
  s.destroy()
})

t.test('resize and suspend/resume', async (t) => {
  const be = await countingServer()
  t.teardown(() => be.close())
  const pool = new Pool(be.endpoint, { size: 3, dial: dialTcp })
  t.teardown(() => pool.close())
  pool.start()
  await waitFor(() => pool.idle === 3 && be.accepts >= 3, 'three idle, accepted at the backend', 2000)
  pool.resize(1)
  t.equal(pool.idle, 1, 'surplus closed')
  await waitFor(() => be.open.size === 1, 'backend sees them closed', 2000)
  pool.suspend()
  t.equal(pool.idle, 0, 'suspend drops idle sockets (backend unhealthy)')
  t.equal(await acquire(pool), undefined, 'no hits while suspended')
  const accepts = be.accepts
  await new Promise((resolve) => setTimeout(resolve, 150))
  t.equal(be.accepts, accepts, 'no refill while suspended')
  pool.resume()
  await waitFor(() => pool.idle === 1, 'refills on resume', 2000)
  pool.close()
  t.equal(pool.idle, 0)
  await waitFor(() => be.open.size === 0, 'close leaves nothing open', 2000)
})

t.test('bad options are coded errors', async (t) => {
  t.throws(() => new Pool({ host: '127.0.0.1', port: 1 }, { size: -1, dial: dialTcp }), { code: 'KT_ERR_INVALID_ARG' })
  t.throws(() => new Pool({ host: '127.0.0.1', port: 1 }, { idleTtlMs: 0, dial: dialTcp }), { code: 'KT_ERR_INVALID_ARG' })
})
