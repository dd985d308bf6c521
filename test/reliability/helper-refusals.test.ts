// Issue #9 case 7: `kind-tunnel helper` (the only part that runs as root)
// refuses every injection attempt and every address outside its pool with
// KT_ERR_ADDRESS_REFUSED, keeps serving, and never touches the interface.
import t from 'tap'
import { helperRefusals } from '../soak/cases/security.js'
import { assertCase } from '../soak/lib/assert.js'

t.test('hostile requests to the helper process', async (t) => {
  assertCase(t, await helperRefusals((m) => t.comment(m)))
})
