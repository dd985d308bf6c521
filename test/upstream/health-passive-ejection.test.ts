// Passive ejection: N consecutive connect failures eject a backend; with an
// active check it stays out until a probe passes, without one until a
// doubling backoff ends, then one more failure ejects it again.

import t from 'tap'
import { BackendHealth, healthTimings, type DialFn, type HealthEvent } from '../../src/dataplane/health.js'
import { waitFor } from './fixtures/net.js'

const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })

t.test('no active check: ejection for a backoff, half-open, doubling', async (t) => {
  const events: HealthEvent[] = []
  const dial: DialFn = () => { t.fail('no probe without a check') }
  const h = new BackendHealth({ host: '127.0.0.1', port: 1 }, {
    check: undefined,
    timings: healthTimings({ ejectAfterFailures: 3, ejectBaseMs: 150, ejectMaxMs: 1000 }),
    dial,
    onChange: (_h, ev) => events.push(ev),
  })
  t.teardown(() => h.stop())
  h.start()
  h.connectFailed(refused)
  h.connectFailed(refused)
  t.ok(h.available, 'two failures: still in')
  h.connectSucceeded()
  h.connectFailed(refused)
  h.connectFailed(refused)
  t.ok(h.available, 'a success resets the count')
  h.connectFailed(refused)
  t.notOk(h.available, 'three consecutive: ejected')
  t.ok(h.ejected)
  t.equal(h.lastFailure, 'ECONNREFUSED')
  let t0 = Date.now()
  await waitFor(() => h.available, 'readmitted after the backoff', 1000)
  const first = Date.now() - t0
  // Node starts timers from the loop's cached clock, which lags Date.now() under load: allow early-looking fires.
  t.ok(first >= 100 && first < 400, `first ejection lasted ${first} ms (base 150)`)
  h.connectFailed(refused)
  t.notOk(h.available, 'half-open: a single failure ejects again')
  t0 = Date.now()
  await waitFor(() => h.available, 'h.available', 2000)
  const second = Date.now() - t0
  t.ok(second >= 240, `second ejection lasted ${second} ms (doubled)`)
  h.connectSucceeded()
  h.connectFailed(refused)
  t.ok(h.available, 'a success closes the circuit: back to needing 3')
  t.same(events, ['ejected', 'readmitted', 'ejected', 'readmitted'])
})

t.test('with an active check: ejected until a probe passes', async (t) => {
  let probes = 0
  let answer: 'refuse' | 'accept' = 'refuse'
  const dial: DialFn = (_e, _ms, cb) => {
    probes++
    if (answer === 'refuse') { cb(refused); return }
    const s = { on () { return s }, destroy () {} } as never
    cb(null, s)
  }
  const events: HealthEvent[] = []
  const h = new BackendHealth({ host: '127.0.0.1', port: 1 }, {
    check: { kind: 'tcp' },
    // unhealthy only after many failed probes, so ejection is what we see
    timings: healthTimings({ intervalMs: 100, timeoutMs: 100, unhealthyThreshold: 50, ejectBaseMs: 10 }),
    dial,
    onChange: (_h, ev) => events.push(ev),
  })
  t.teardown(() => h.stop())
  h.start()
  for (let i = 0; i < 3; i++) h.connectFailed(refused)
  t.ok(h.ejected)
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.ok(h.ejected, 'no timed readmission while an active check exists')
  t.ok(probes >= 2)
  answer = 'accept'
  await waitFor(() => !h.ejected, 'a passing probe readmits', 1000)
  t.same(events, ['ejected', 'readmitted'])
})

t.test('timings are checked once, with coded errors', async (t) => {
  t.throws(() => healthTimings({ intervalMs: 0 }), { code: 'KT_ERR_INVALID_ARG' })
  t.throws(() => healthTimings({ unhealthyThreshold: 1.5 }), { code: 'KT_ERR_INVALID_ARG' })
  t.throws(() => healthTimings({ ejectBaseMs: 10, ejectMaxMs: 5 }), { code: 'KT_ERR_INVALID_ARG' })
  t.same(healthTimings(), { intervalMs: 2000, timeoutMs: 3000, unhealthyThreshold: 2, healthyThreshold: 1, ejectAfterFailures: 3, ejectBaseMs: 10000, ejectMaxMs: 120000 })
  t.ok(Object.isFrozen(healthTimings({ intervalMs: 5 })))
})
