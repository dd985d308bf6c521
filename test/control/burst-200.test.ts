// 200 Services created in one burst are all served, then deleted in one
// burst and all cleaned: no listener and no address left behind. The time to
// converge each way is measured and printed (a figure, not an assertion:
// timing targets live in native-bench); the waits are only bounds.

import t from 'tap'
import { httpGet, ingressOf, lbService, startHarness, waitFor } from './fixtures/harness.js'

const N = 200

t.test(`${N} Services created and deleted in a burst converge with nothing leaked`, async (t) => {
  const h = await startHarness(t)
  const names = Array.from({ length: N }, (_, i) => `svc-${String(i).padStart(3, '0')}`)

  const t0 = performance.now()
  for (const n of names) h.api.create(lbService(n, [{ port: 18080 }]))
  const withStatus = (): number => names.filter((n) => ingressOf(h.api, n).length > 0).length
  await waitFor(() => withStatus() === N, () => `${N} statuses (have ${withStatus()})`, 120_000, { everyMs: 100 })
  const up = performance.now() - t0
  for (const n of names) await h.serveNodePorts(n)

  const ips = names.map((n) => ingressOf(h.api, n)[0]?.ip as string)
  t.equal(new Set(ips).size, N, 'every Service has its own IP')
  t.equal(h.dp.snapshot().listeners.length, N, `${N} listeners`)
  t.equal(h.addresses.held.size, N, `${N} addresses held`)
  // Every one answers: N requests, 20 at a time.
  let ok = 0
  for (let i = 0; i < N; i += 20) {
    const bodies = await Promise.all(ips.slice(i, i + 20).map(async (ip) => await httpGet(ip, 18080)))
    ok += bodies.filter((b) => b.startsWith('node=')).length
  }
  t.equal(ok, N, `all ${N} Services answer on IP:port`)

  const t1 = performance.now()
  for (const n of names) h.api.delete('services', n)
  const left = (): number => h.api.list('services', 'default').filter((s) => s.metadata.name !== 'kubernetes').length
  await waitFor(() => left() === 0, () => `${N} Services gone (${left()} left)`, 120_000, { everyMs: 100 })
  const down = performance.now() - t1
  await waitFor(() => h.dp.snapshot().listeners.length === 0, 'no listener left', 3000)
  t.equal(h.addresses.held.size, 0, 'no address left')
  t.same(h.ctl.snapshot().addresses, [], 'the controller holds none')

  const snap = h.ctl.snapshot()
  t.comment(`API requests: ${h.api.requestCount()} (409: ${h.api.requestCount({ code: 409 })}, 5xx: ${h.api.requests.filter((r) => r.code >= 500).length}), writes retried after an error: ${h.metrics.render().split('\n').filter((l) => l.startsWith('kt_controller_api_writes_total') && !l.includes('outcome="ok"')).join('; ') || 'none'}`)
  t.comment(`convergence: ${N} created → all statuses in ${Math.round(up)} ms; ${N} deleted → all gone in ${Math.round(down)} ms; ${snap.reconciles} reconciles`)
})
