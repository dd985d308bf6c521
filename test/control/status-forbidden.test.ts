// A 403 on the status patch: a clear error with its code (naming the verb,
// the resource and docs/rbac.yaml), retried with backoff, while the data
// plane serves. Once allowed, the status lands.

import t from 'tap'
import { finalizersOf, httpGet, ingressOf, lbService, startHarness, waitFor } from './fixtures/harness.js'
import { FINALIZER, OWN_FINALIZER } from '../../src/routing/compute.js'

t.test('a forbidden status patch is reported with its code and retried with backoff; the data plane serves', async (t) => {
  const h = await startHarness(t)
  const lift = h.api.forbid({ verb: 'patch', resource: 'services', subresource: 'status' })
  h.api.create(lbService('web', [{ port: 18080 }]))
  await h.serveNodePorts('web')

  const s = await waitFor(() => h.ctl.snapshot().services.find((x) => x.key === 'default/web' && x.lastError !== undefined), 'the error in the snapshot')
  t.equal(s.lastError?.code, 'KT_ERR_KUBE_FORBIDDEN')
  t.match(s.lastError?.message, /patch services\/status "default\/web"/, 'names the verb and the resource')
  t.match(s.lastError?.message, /HTTP 403/)
  t.match(s.lastError?.message, /docs\/rbac\.yaml/, 'points at the RBAC file')
  t.equal(s.statusPatched, false)
  t.same(ingressOf(h.api, 'web'), [], 'no status')
  t.same(finalizersOf(h.api, 'web'), [FINALIZER, OWN_FINALIZER], 'the finalizer patch (allowed) went through')

  const ip = s.ip as string
  t.match(await httpGet(ip, 18080), /^node=/, 'the data plane serves meanwhile')

  // Backoff, from the API server's own record of each refused patch: the
  // harness retries with 100 ms doubling (jitter ±20 %, cap 2 s), so each gap
  // between attempts must be at least its backoff's lower bound (80, 160,
  // 320, 640 ms). A retry loop, or no retry, fails here; a slow machine only
  // widens the gaps. (The first gap is left out: the controller's own writes
  // may wake it early once.)
  const refused = (): number[] => h.api.requests.filter((r) => r.verb === 'patch' && r.resource === 'services' && r.subresource === 'status' && r.code === 403).map((r) => r.at)
  const at = await waitFor(() => refused().length >= 5 && refused(), () => `5 refused status patches (have ${refused().length})`, 15_000)
  const gaps = at.slice(1, 5).map((x, i) => x - (at[i] as number))
  t.comment(`gaps between refused patches: ${gaps.join(', ')} ms`)
  for (let i = 1; i < 4; i++) t.ok((gaps[i] as number) >= 0.8 * 100 * 2 ** i - 2, `retry ${i + 2} waited for its backoff (${gaps[i]} ms ≥ ${0.8 * 100 * 2 ** i} ms)`)
  const retryIn = await waitFor(() => h.ctl.snapshot().services.find((x) => x.key === 'default/web')?.retryInMs, 'a scheduled retry in the snapshot', 5000)
  t.ok(retryIn > 0 && retryIn <= 2000, `a retry is scheduled within the cap (${retryIn} ms)`)
  const warned = h.api.list('events', 'default').filter((e) => (e as unknown as { reason: string }).reason === 'SyncLoadBalancerFailed')
  t.equal(warned.length, 1, 'one SyncLoadBalancerFailed event, not one per retry')
  t.match((warned[0] as unknown as { message: string }).message, /KT_ERR_KUBE_FORBIDDEN/)

  lift()
  await waitFor(() => ingressOf(h.api, 'web')[0]?.ip === ip, 'the status once allowed', 3000)
  t.match(await httpGet(ip, 18080), /^node=/, 'the same listener still serves')
  await waitFor(() => h.ctl.snapshot().services.find((x) => x.key === 'default/web' && x.lastError === undefined), 'the error cleared')
})

t.test('a forbidden list of a required resource rejects synced with its code', async (t) => {
  const h = await startHarness(t, { start: false })
  h.api.forbid({ verb: 'list', resource: 'nodes' })
  const ctl = await h.startController()
  const err = await ctl.synced.then(() => undefined, (e: unknown) => e as { code?: string, message?: string })
  t.equal(err?.code, 'KT_ERR_KUBE_FORBIDDEN')
  t.match(err?.message, /list nodes/)
  t.match(err?.message, /docs\/rbac\.yaml/)
})
