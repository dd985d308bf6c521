// Time to first byte behind a forwarder that accepts at once and connects
// onward slowly (Docker Desktop's port forwarder, the relay): a warm pooled
// socket has already paid the onward connect, a fresh dial pays it per
// client. Margins are generous; the figures are printed as comments.

import t from 'tap'
import type { Socket } from 'node:net'
import { Pool } from '../../src/dataplane/pool.js'
import { startSlowForwarder } from '../support/slow-forwarder.js'
import { countingServer, dialTcp, sleep, waitFor } from './fixtures/net.js'

const DELAY_MS = 150
const ROUNDS = 8
const RESPONSE = 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok'

function ttfb (s: Socket): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint()
    const timer = setTimeout(() => reject(new Error('no first byte in 5 s')), 5000)
    s.once('data', () => { clearTimeout(timer); resolve(Number(process.hrtime.bigint() - t0) / 1e6) })
    s.once('error', (e) => { clearTimeout(timer); reject(e) })
    s.resume()
    s.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n')
  })
}

function dial (e: { host: string, port: number }): Promise<Socket> {
  return new Promise((resolve, reject) => dialTcp(e, 2000, (err, s) => { if (err !== null) reject(err); else resolve(s as Socket) }))
}

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] as number }

t.test('a warm pool removes the slow onward connect from TTFB', async (t) => {
  const be = await countingServer((s) => { s.once('data', () => s.end(RESPONSE)) })
  t.teardown(() => be.close())
  const fwd = await startSlowForwarder(be.endpoint, DELAY_MS)
  t.teardown(() => fwd.close())

  // Cold: connect to the forwarder (instant), then wait out its onward connect.
  const cold: number[] = []
  for (let i = 0; i < ROUNDS; i++) {
    const s = await dial(fwd.endpoint)
    cold.push(await ttfb(s))
    s.destroy()
  }

  // Warm: sockets pooled long enough ago that the forwarder has connected onward.
  const pool = new Pool(fwd.endpoint, { size: 2, dial: dialTcp })
  t.teardown(() => pool.close())
  pool.start()
  const warm: number[] = []
  for (let i = 0; i < ROUNDS; i++) {
    await waitFor(() => pool.idle === 2, `pool full before round ${i}`, 3000)
    await sleep(DELAY_MS + 50)
    const s = await new Promise<Socket | undefined>((resolve) => pool.acquire(resolve))
    t.ok(s, 'pool hit')
    if (s === undefined) continue
    warm.push(await ttfb(s))
    s.destroy()
  }
  const c = median(cold)
  const w = median(warm)
  t.comment(`TTFB behind a ${DELAY_MS} ms onward connect, median of ${ROUNDS}: fresh dial ${c.toFixed(1)} ms, warm pool ${w.toFixed(1)} ms`)
  t.comment(`fresh: ${cold.map((x) => x.toFixed(1)).join(' ')}; warm: ${warm.map((x) => x.toFixed(1)).join(' ')}`)
  t.ok(c >= DELAY_MS * 0.9, 'a fresh dial pays the onward connect')
  t.ok(w < c - DELAY_MS / 2, 'a warm socket does not')
  t.equal(pool.hits, ROUNDS)
})
