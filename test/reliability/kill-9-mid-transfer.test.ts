// Issue #9 case 4: a backend process killed with kill -9 mid-transfer. Its
// clients see a reset (never a clean end that would pass for a complete
// transfer); clients of the other backend finish byte-exact; new clients
// are served by the survivor.
import t from 'tap'
import { kill9MidTransfer } from '../soak/cases/faults.js'
import { assertCase } from '../soak/lib/assert.js'
import { killAll } from '../soak/lib/proc.js'

t.teardown(killAll)

t.test('kill -9 of one of two backends while 4 transfers run', async (t) => {
  assertCase(t, await kill9MidTransfer({ clients: 4, bytes: 16 * 1024 * 1024, rateBytesPerSec: 8 * 1024 * 1024, killAfterMs: 700 }, (m) => t.comment(m)))
})
