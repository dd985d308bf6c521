// test/relay/mux-frames.test.ts again, over the addon's relay listener: the
// carrier is served by kt_mux.c, and every case must answer as mux-server.ts.
import { overTheLane } from '../../support/relay-path.js'

await overTheLane(async () => await import('../mux-frames.test.js'))
