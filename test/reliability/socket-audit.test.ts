// Issue #9 case 7: nothing kind-tunnel runs listens on 0.0.0.0 or :: (ss
// audit of `proxy` and of `demo`, which runs `up`'s code), and wildcard
// binds are refused with a one-line KT_ERR_WILDCARD_BIND.
import t from 'tap'
import { socketAudit } from '../soak/cases/security.js'
import { assertCase } from '../soak/lib/assert.js'
import { killAll } from '../soak/lib/proc.js'

t.teardown(killAll)

t.test('ss audit of proxy and demo; wildcard binds refused', async (t) => {
  assertCase(t, await socketAudit({ demo: true }, (m) => t.comment(m)))
})
