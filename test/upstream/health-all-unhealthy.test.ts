// When every backend of an upstream is out: one log record per transition
// (not per connection), the kt_upstream_all_unhealthy gauge, and the policy.

import t from 'tap'
import { HealthGroup, healthTimings, type DialFn } from '../../src/dataplane/health.js'
import { Registry } from '../../src/observe/metrics.js'
import { memoryLogger } from './fixtures/log.js'

const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })
const dial: DialFn = () => {}

t.test('all-unhealthy transitions are logged once each and exposed as a gauge', async (t) => {
  const { logger, records } = memoryLogger()
  const metrics = new Registry()
  const changes: string[] = []
  const group = new HealthGroup({
    upstream: 'default/web:https',
    check: undefined,
    timings: healthTimings({ ejectBaseMs: 60_000, ejectMaxMs: 60_000 }),
    dial,
    logger,
    metrics,
    allUnhealthy: 'refuse',
    onChange: (h, ev) => changes.push(`${h.key} ${ev}`),
  })
  t.teardown(() => group.close())
  const a = group.add({ host: '172.18.0.2', port: 30443 })
  const b = group.add({ host: '172.18.0.3', port: 30443 })
  const gauge = (): string | undefined => /kt_upstream_all_unhealthy\{upstream="default\/web:https"\} (\d)/.exec(metrics.render())?.[1]
  t.equal(gauge(), '0')
  t.equal(group.allUnhealthy, false)
  for (let i = 0; i < 3; i++) a.connectFailed(refused)
  t.equal(group.allUnhealthy, false, 'one of two down')
  for (let i = 0; i < 10; i++) b.connectFailed(refused) // repeated failures: no repeated logs
  t.equal(group.allUnhealthy, true)
  t.equal(gauge(), '1')
  t.equal(group.allUnhealthyPolicy, 'refuse')
  b.connectSucceeded() // a try-all connect got through
  t.equal(group.allUnhealthy, false)
  t.equal(gauge(), '0')
  const transitions = records.filter((r) => r.allUnhealthy !== undefined).map((r) => r.allUnhealthy)
  t.same(transitions, [true, false], 'one record per transition')
  t.same(changes, ['172.18.0.2:30443 ejected', '172.18.0.3:30443 ejected', '172.18.0.3:30443 readmitted'])
  t.match(metrics.render(), /kt_upstream_backend_ejections_total\{backend="172\.18\.0\.2:30443",upstream="default\/web:https"\} 1/)

  group.remove(b)
  t.equal(group.allUnhealthy, true, 'removing the only good backend leaves all down')
  t.notMatch(metrics.render(), /kt_upstream_backend_up\{backend="172\.18\.0\.3/, 'removed backend series deleted')
  group.remove(a)
  t.equal(group.allUnhealthy, false, 'an empty upstream is not "all unhealthy" (it has no backend at all)')
})

t.test('default policy is try-all', async (t) => {
  const { logger } = memoryLogger()
  const group = new HealthGroup({ upstream: 'u', check: undefined, timings: healthTimings(), dial, logger })
  t.teardown(() => group.close())
  t.equal(group.allUnhealthyPolicy, 'try-all')
})
