// test/relay/udp.test.ts again, over the addon's relay listener (kt_relay.c):
// the relay's differential test, every case held for both accept paths.
import { overTheLane } from '../../support/relay-path.js'

await overTheLane(async () => await import('../udp.test.js'))
