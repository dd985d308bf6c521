// The engine's registered deadlines (issue 15, kt_timer.c): every worker's
// idle scan, connect and peek timeouts, ring flush and EMFILE pause are timers
// in one list in due order, and the loop sleeps until the earliest. The test
// variant's ktTimerScript runs a script of [op, id, value] triplets against a
// fresh list (kt_timer.c's test hook) and returns what fired; the end-to-end
// behaviour each timer drives is covered by idle-timeout, fd-exhaustion and
// the fastlane tests (connect and peek timeouts, access-log batches).
import t from 'tap'
import { createRequire } from 'node:module'
import { variantAddon, variantSkip } from './fixtures/variant.js'

const skip = await variantSkip()
const ARM = 0, BEFORE = 1, CANCEL = 2, RUN = 3, NEXT = 4, REARM = 5, CANCELS = 6

function script (...ops: Array<[number, number, number]>): number[] {
  const b = createRequire(import.meta.url)(variantAddon()) as { ktTimerScript?: (s: number[]) => number[] }
  if (b.ktTimerScript === undefined) throw new Error('test variant without ktTimerScript')
  return b.ktTimerScript(ops.flat())
}

t.test('timers fire in due order, equal due times in arming order, only when due', { skip }, async (t) => {
  t.same(script([ARM, 3, 30], [ARM, 1, 10], [ARM, 2, 20], [ARM, 4, 10], [NEXT, 0, 0], [RUN, 0, 9], [RUN, 0, 20], [NEXT, 0, 0], [RUN, 0, 100], [NEXT, 0, 0]),
    [10, 4, -1, 1, 4, 2, -1, 30, 1, 3, -1, -2, 0])
})

t.test('re-arming moves a timer; arm_before only moves it earlier', { skip }, async (t) => {
  t.same(script([ARM, 1, 10], [ARM, 2, 20], [ARM, 1, 30], [RUN, 0, 25], [NEXT, 0, 0]), [2, -1, 30, 1])
  t.same(script([ARM, 1, 10], [BEFORE, 1, 30], [NEXT, 0, 0], [BEFORE, 1, 5], [NEXT, 0, 0], [BEFORE, 2, 7], [RUN, 0, 7], [NEXT, 0, 0]),
    [10, 1, 5, 1, 1, 2, -1, -2, 0])
})

t.test('a cancelled timer never fires, cancelling twice or an unarmed one is harmless', { skip }, async (t) => {
  t.same(script([ARM, 1, 10], [ARM, 2, 10], [ARM, 3, 10], [CANCEL, 2, 0], [CANCEL, 2, 0], [CANCEL, 5, 0], [NEXT, 0, 0], [RUN, 0, 10], [NEXT, 0, 0]),
    [10, 2, 1, 3, -1, -2, 0])
  // Cancelled from another timer's callback in the same run: the run does not fire it.
  t.same(script([CANCELS, 1, 2], [ARM, 1, 10], [ARM, 2, 10], [ARM, 3, 11], [RUN, 0, 20], [NEXT, 0, 0]), [1, 3, -1, -2, 0])
})

t.test('a callback re-arming at or before now runs again next turn, not in a loop', { skip }, async (t) => {
  // Timer 1 re-arms itself at now + 0 each time it fires: once per run.
  t.same(script([REARM, 1, 0], [ARM, 1, 5], [ARM, 2, 6], [RUN, 0, 10], [RUN, 0, 10], [NEXT, 0, 0]), [1, 2, -1, 1, -1, 10, 1])
  // Re-armed later than now: it waits for that time.
  t.same(script([REARM, 1, 50], [ARM, 1, 5], [RUN, 0, 10], [RUN, 0, 59], [RUN, 0, 60], [NEXT, 0, 0]), [1, -1, -1, 1, -1, 110, 1])
})
