// A 403 on the status patch: a clear error with its code (naming the verb,
// the resource and docs/rbac.yaml), retried with backoff, while the data
// plane serves. Once allowed, the status lands.

import t from 'tap'
import { finalizersOf, httpGet, ingressOf, lbService, sleep, startHarness, waitFor } from './fixtures/harness.js'
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

  const t0 = h.api.requestCount({ verb: 'patch', resource: 'services', subresource: 'status', code: 403 })
  await sleep(1500)
  const tries = h.api.requestCount({ verb: 'patch', resource: 'services', subresource: 'status', code: 403 }) - t0
  t.ok(tries >= 2, `retried (${tries} attempts in 1.5 s)`)
  t.ok(tries <= 6, `with backoff, not in a loop (${tries} attempts in 1.5 s)`)
  t.ok((h.ctl.snapshot().services.find((x) => x.key === 'default/web')?.retryInMs ?? 0) > 0 || tries > 0, 'a retry is scheduled')
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
