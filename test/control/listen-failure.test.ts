// The status never promises a dead address: while the Service's listener
// cannot bind, no status is written (a ListenFailed event says why), the bind
// is retried with backoff, and the status lands once the listener is up.

import t from 'tap'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { httpGet, ingressOf, lbService, startHarness, waitFor } from './fixtures/harness.js'

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
  // The bind is retried with the harness's backoff (100 ms doubling, jitter
  // ±20 %): each gap between failed binds is at least its step's lower bound
  // (80, 160, 320, 640 ms). A bind loop fails this; a slow machine only
  // widens the gaps. (The first gap is left out: the controller's own event
  // write may wake it early once.)
  const failedAt = (): number[] => h.applies.flatMap((a, i) => a.failed.some((f) => f.key === `${ip}:18080`) ? [h.appliedAt[i] as number] : [])
  const at = await waitFor(() => failedAt().length >= 5 && failedAt(), () => `5 failed binds (have ${failedAt().length})`, 15_000)
  const gaps = at.slice(1, 5).map((x, i) => x - (at[i] as number))
  t.comment(`gaps between failed binds: ${gaps.join(', ')} ms`)
  for (let i = 1; i < 4; i++) t.ok((gaps[i] as number) >= 0.8 * 100 * 2 ** i - 2, `bind ${i + 2} waited for its backoff (${gaps[i]} ms ≥ ${0.8 * 100 * 2 ** i} ms)`)
  t.same(ingressOf(h.api, 'web'), [], 'no status for a dead address')
  const events = h.api.list('events', 'default').map((e) => (e as unknown as { reason: string }).reason)
  t.same(events, ['ListenFailed'], 'one ListenFailed event, no EnsuredLoadBalancer')

  await new Promise<void>((resolve) => squatter.close(() => resolve()))
  await waitFor(() => ingressOf(h.api, 'web')[0]?.ip === ip, 'the status once the listener is up', 5000)
  t.match(await httpGet(ip, 18080), /^node=/)
  t.equal(h.ctl.snapshot().services.find((x) => x.key === 'default/web')?.lastError, undefined, 'the error cleared')
})
