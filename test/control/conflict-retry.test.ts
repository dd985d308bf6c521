// A 409 on the finalizer patch (someone changed the Service meanwhile):
// the controller reads the Service again and retries with the fresh
// resourceVersion, keeping the other finalizers.

import t from 'tap'
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
