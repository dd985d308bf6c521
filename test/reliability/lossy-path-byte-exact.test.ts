// Issue #9 case 4: 5% packet loss each way (iptables statistic in a test
// netns, MTU-sized segments) plus 50 ms each way (a delaying forwarder; this
// kernel has no netem): every transfer through the proxy is byte-exact.
import t from 'tap'
import { lossyPath } from '../soak/cases/faults.js'
import { assertCase } from '../soak/lib/assert.js'
import { killAll } from '../soak/lib/proc.js'
import { netnsAvailable } from '../support/netns.js'

t.teardown(killAll)

t.test('4 × 1 MiB echoed over a lossy, slow path', { skip: netnsAvailable() ? false : 'needs ip netns (root)' }, async (t) => {
  assertCase(t, await lossyPath({ clients: 4, bytes: 1024 * 1024, lossPct: 5, delayMs: 50 }, (m) => t.comment(m)))
})
