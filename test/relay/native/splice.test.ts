// test/relay/splice.test.ts again, over the addon's relay listener (kt_relay.c):
// the relay's differential test, every case held for both accept paths.
import t from 'tap'
import { loadNativeSplicer, nativeUnavailableReason } from '../../../src/dataplane/native/index.js'
import { nativeSkip } from '../../support/native.js'

const splicer = loadNativeSplicer()
splicer?.close()
const skip = nativeSkip(splicer === undefined ? `the native addon is not available: ${nativeUnavailableReason() ?? '?'}` : false)
if (skip !== false) t.plan(0, skip)
else {
  process.env.KT_TEST_RELAY_PATH = 'native'
  await import('../splice.test.js')
}
