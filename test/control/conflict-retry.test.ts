// A 409 on the finalizer patch (someone changed the Service meanwhile):
// the controller reads the Service again and retries with the fresh
// resourceVersion, keeping the other finalizers.

import t from 'tap'
import { undoCluster } from '../../src/control/controller.js'
import { CONFLICT_ATTEMPTS } from '../../src/control/service-api.js'
import { silentLogger } from '../../src/observe/logger.js'
import { FINALIZER, OWN_FINALIZER } from '../../src/routing/compute.js'
import { finalizersOf, ingressOf, lbService, startHarness, waitFor } from './fixtures/harness.js'

t.test('a conflicting finalizer patch is re-read and retried; other finalizers are kept', async (t) => {
  const h = await startHarness(t)
  h.api.fail({ verb: 'patch', resource: 'services', subresource: '', code: 409, times: 2 })
  const svc = lbService('web', [{ port: 18080 }])
  svc.metadata.finalizers = ['example.com/keep-me']
  h.api.create(svc)
  await waitFor(() => ingressOf(h.api, 'web').length > 0, 'the status')
  t.same(finalizersOf(h.api, 'web'), ['example.com/keep-me', FINALIZER, OWN_FINALIZER], 'ours added, theirs kept')
  t.equal(h.api.requestCount({ verb: 'patch', resource: 'services', subresource: '', code: 409 }), 2, 'two conflicts')
  t.ok(h.api.requestCount({ verb: 'get', resource: 'services', name: 'web' }) >= 2, 'each followed by a fresh read')
  t.equal(h.ctl.snapshot().services.find((s) => s.key === 'default/web')?.lastError, undefined, 'no error left')

  // Deleting: ours is removed, theirs stays (and holds the object).
  h.api.delete('services', 'web')
  await waitFor(() => (finalizersOf(h.api, 'web') ?? []).length === 1, 'our finalizer removed', 3000)
  t.same(finalizersOf(h.api, 'web'), ['example.com/keep-me'])
})

t.test('`down` (undoCluster) retries a conflicting finalizer patch with the same helper, and gives up after 4', async (t) => {
  const h = await startHarness(t)
  const svc = lbService('web', [{ port: 18080 }])
  svc.metadata.finalizers = ['example.com/keep-me']
  h.api.create(svc)
  h.api.create(lbService('other', [{ port: 18081 }]))
  await waitFor(() => ingressOf(h.api, 'web').length > 0 && ingressOf(h.api, 'other').length > 0, 'both statuses')
  await h.ctl.stop()
  const opts = { cluster: 'sim', kubeconfig: h.kubeconfig, routing: { mode: 'ip' as const, ipPool: h.pool }, addresses: h.addresses, logger: silentLogger() }

  // Every finalizer patch conflicts: four attempts, then KT_ERR_KUBE_CONFLICT (inside KT_ERR_CLEANUP).
  const stopFailing = h.api.fail({ verb: 'patch', resource: 'services', subresource: '', code: 409 })
  const before = h.api.requestCount({ verb: 'patch', resource: 'services', subresource: '', code: 409 })
  const err = await undoCluster(opts).then(() => undefined, (e: unknown) => e as { code?: string, cause?: { code?: string } })
  t.equal(err?.code, 'KT_ERR_CLEANUP')
  t.equal(err?.cause?.code, 'KT_ERR_KUBE_CONFLICT', 'the first failure is the conflict')
  t.equal(h.api.requestCount({ verb: 'patch', resource: 'services', subresource: '', code: 409 }) - before, 2 * CONFLICT_ATTEMPTS, `${CONFLICT_ATTEMPTS} attempts per Service`)
  stopFailing()

  // Two conflicts, then it goes through: theirs kept, ours gone.
  h.api.fail({ verb: 'patch', resource: 'services', subresource: '', code: 409, times: 2 })
  t.equal(await undoCluster(opts), 2)
  t.same(finalizersOf(h.api, 'web'), ['example.com/keep-me'])
  t.same(finalizersOf(h.api, 'other'), [])
})
