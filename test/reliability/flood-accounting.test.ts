// Issue #9 case 5: a flood of random bytes, truncated and oversized hellos
// and empty flights on a routing listener. No crash, and every connection is
// counted once: kt_connections_total and kt_route_decisions_total both sum
// to the number of connections made.
import t from 'tap'
import { flood } from '../soak/cases/abuse.js'
import { assertCase } from '../soak/lib/assert.js'
import { killAll } from '../soak/lib/proc.js'

t.teardown(killAll)

t.test('700 hostile first flights, each half-closed after sending', async (t) => {
  assertCase(t, await flood({ n: 700, rstN: 0 }, (m) => t.comment(m)))
})

// Found by this suite: Listener.accept() used to destroy a socket whose peer
// reset before it was looked at (remoteAddress is undefined then) without
// counting it; it is now counted as reset_client.
t.test('clients that reset right after their flight are counted too', async (t) => {
  assertCase(t, await flood({ n: 100, rstN: 300 }, (m) => t.comment(m)))
})
