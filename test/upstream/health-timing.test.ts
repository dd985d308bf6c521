// Timing properties of the checker: start-to-start probes make a black-holed
// backend go out within interval × 2 + timeout; first probes are jittered;
// a late probe result never overrides a newer one.

import t from 'tap'
import type { Socket } from 'node:net'
import { BackendHealth, healthTimings, type DialFn } from '../../src/dataplane/health.js'
import { countingServer, dialTcp, waitFor } from './fixtures/net.js'

t.test('a black-holed health port: out within 2 × interval + timeout', async (t) => {
  // Accepts (so the connect passes) and never answers: every probe times out.
  const hole = await countingServer(() => {})
  t.teardown(() => hole.close())
  const timings = healthTimings({ intervalMs: 200, timeoutMs: 300 })
  let healthyAt = 0
  const h = new BackendHealth({ host: '127.0.0.1', port: 9 }, {
    check: { kind: 'http', port: hole.port, path: '/healthz' },
    timings,
    dial: dialTcp,
    onChange: () => {},
    random: () => 0, // first probe at once, so the clock below starts at a probe
  })
  t.teardown(() => h.stop())
  healthyAt = Date.now()
  h.start()
  await waitFor(() => !h.healthy, '!h.healthy', 3000)
  const took = Date.now() - healthyAt
  // Probes start at 0 and 200 ms; the second times out at 500 ms. A checker
  // that waited for each probe would need 0+300, then 300+300+... = 800+ ms.
  t.ok(took >= 450 && took < 750, `out after ${took} ms (expected ≈ 500)`)
  t.equal(h.lastFailure, 'timeout')
  t.ok(hole.accepts <= 4, 'probe count bounded')
})

t.test('first probes are spread over the interval', async (t) => {
  const starts: number[] = []
  const dial: DialFn = (_e, _ms, cb) => { starts.push(Date.now()); cb(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' })) }
  const timings = healthTimings({ intervalMs: 1000 })
  const t0 = Date.now()
  const hs = Array.from({ length: 20 }, (_, i) => new BackendHealth({ host: '127.0.0.1', port: 1000 + i }, { check: { kind: 'tcp' }, timings, dial, onChange: () => {} }))
  t.teardown(() => { for (const h of hs) h.stop() })
  for (const h of hs) h.start()
  await waitFor(() => starts.length >= 20, 'starts.length >= 20', 2000)
  const offsets = starts.slice(0, 20).map((s) => s - t0).sort((a, b) => a - b)
  const spread = (offsets.at(-1) as number) - (offsets[0] as number)
  t.ok(spread > 400, `20 first probes spread over ${spread} ms, not bunched`)
  const buckets = new Set(offsets.map((o) => Math.floor(o / 100)))
  t.ok(buckets.size >= 5, `in ${buckets.size} of 10 100-ms slots`)
})

t.test('a stale probe result does not override a newer one', async (t) => {
  // Probe 1 hangs until its timeout; probe 2 passes first. Probe 1's late
  // failure must not count.
  const pending: Array<(ok: boolean) => void> = []
  let n = 0
  const dial: DialFn = (_e, ms, cb) => {
    n++
    if (n === 1) { pending.push(() => {}); return } // never answers: the probe times out
    const s = { on () { return s }, destroy () {} } as unknown as Socket
    cb(null, s)
  }
  const timings = healthTimings({ intervalMs: 100, timeoutMs: 250, unhealthyThreshold: 1 })
  const events: string[] = []
  const h = new BackendHealth({ host: '127.0.0.1', port: 1 }, { check: { kind: 'tcp' }, timings, dial, onChange: (_h, ev) => events.push(ev), random: () => 0 })
  t.teardown(() => h.stop())
  h.start()
  await new Promise((resolve) => setTimeout(resolve, 400))
  t.ok(n >= 3, 'probes kept starting on schedule while one hung')
  t.same(events, [], 'the late timeout of probe 1 did not mark it unhealthy')
  t.ok(h.healthy)
})
