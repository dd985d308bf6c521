// Issue #9 cases 2 and 3, small: churn through two listeners while route
// tables change under them: 0 failed connects, no idle connection dropped,
// the unchanged listeners never rebound (same fd, same socket inode).
import t from 'tap'
import { reloadUnderLoad } from '../soak/cases/reload.js'
import { assertCase } from '../soak/lib/assert.js'
import { killAll } from '../soak/lib/proc.js'

t.teardown(killAll)

t.test('5 s of churn at 200/s with 20 route-table changes', async (t) => {
  assertCase(t, await reloadUnderLoad({ idle: 200, rate: 200, seconds: 5, changes: 20 }, (m) => t.comment(m)))
})
