// The status never promises a dead address: while the Service's listener
// cannot bind, no status is written (a ListenFailed event says why), the bind
// is retried with backoff, and the status lands once the listener is up.

import t from 'tap'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { httpGet, ingressOf, lbService, sleep, startHarness, waitFor } from './fixtures/harness.js'

t.test('no status while the listener cannot bind; status once it can', async (t) => {
  const h = await startHarness(t)
  const ip = h.pool.replace(/\.0\/24$/, '.1') // the first address the pool hands out
  const squatter = createServer()
  squatter.listen(18080, ip)
  await once(squatter, 'listening')
  t.teardown(() => { squatter.close() })

  h.api.create(lbService('web', [{ port: 18080 }]))
  await h.serveNodePorts('web')
  const s = await waitFor(() => h.ctl.snapshot().services.find((x) => x.key === 'default/web' && x.lastError !== undefined), 'the bind failure')
  t.equal(s.ip, ip)
  t.equal(s.lastError?.code, 'EADDRINUSE')
  t.equal(s.ports[0]?.up, false)
  t.equal(s.statusPatched, false)
  await sleep(600)
  t.same(ingressOf(h.api, 'web'), [], 'no status for a dead address')
  const events = h.api.list('events', 'default').map((e) => (e as unknown as { reason: string }).reason)
  t.same(events, ['ListenFailed'], 'one ListenFailed event, no EnsuredLoadBalancer')
  const binds = h.applies.filter((a) => a.failed.some((f) => f.key === `${ip}:18080`)).length
  t.ok(binds >= 2 && binds <= 8, `the bind was retried with backoff (${binds} attempts in ~1 s)`)

  await new Promise<void>((resolve) => squatter.close(() => resolve()))
  await waitFor(() => ingressOf(h.api, 'web')[0]?.ip === ip, 'the status once the listener is up', 5000)
  t.match(await httpGet(ip, 18080), /^node=/)
  t.equal(h.ctl.snapshot().services.find((x) => x.key === 'default/web')?.lastError, undefined, 'the error cleared')
})
