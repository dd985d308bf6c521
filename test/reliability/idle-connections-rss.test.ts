// Issue #9 case 1, small: idle connections held through the real `proxy`
// CLI, and every one still echoes at the end. At 2,000 connections V8's GC
// timing moves RSS by a few MiB either way, so the bound here is a loose
// 16 KiB per connection; `npm run soak` measures the figure against the
// 10 KiB target with as many connections as the fd limit allows.
import t from 'tap'
import { idleChurn } from '../soak/cases/idle-churn.js'
import { assertCase } from '../soak/lib/assert.js'
import { killAll } from '../soak/lib/proc.js'

t.teardown(killAll)

t.test('2,000 idle connections: RSS per connection, all usable at the end', async (t) => {
  assertCase(t, await idleChurn({ idle: 2000, churnRate: 0, churnSeconds: 0, rssTargetKiB: 16, native: true }, (m) => t.comment(m)))
})
