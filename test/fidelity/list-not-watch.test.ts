// RBAC that allows list but not watch: the first list succeeds, every watch
// is a 403. Without watch the controller would never hear of a change, so
// its first sync must fail and say which verb is missing, not resolve on
// the list alone.
import t from 'tap'
import { startHarness, within } from '../control/fixtures/harness.js'

t.test('list allowed, watch refused: synced rejects and names the missing verb', async (t) => {
  const h = await startHarness(t, { start: false })
  h.api.forbid({ verb: 'watch', resource: 'services' })
  await h.startController()
  const err = await within(h.ctl.synced.then(() => undefined, (e: unknown) => e as Error & { code?: string }), 10_000, 'synced to settle')
  t.ok(err !== undefined, 'synced rejected')
  t.equal(err?.code, 'KT_ERR_KUBE_FORBIDDEN')
  t.match(err?.message, /may list services but not watch them/)
  t.match(h.ctl.snapshot().apiProblem?.message, /not watch/, 'status says so too')
})
