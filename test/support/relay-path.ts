// Which accept path the relay tests run over: JS by default, or the addon's
// lane (kt_relay.c) when KT_TEST_RELAY_PATH=native. test/relay/native-suite
// runs the relay's protocol suites again that way, so every refusal, splice
// and pool case holds for both paths (the differential test of kt_relay.c).
import t from 'tap'
import { loadNativeSplicer, nativeUnavailableReason, type NativeSplicer } from '../../src/dataplane/native/index.js'
import { nativeSkip } from './native.js'
import { startRelay, type RelayOptions, type RelayHandle } from '../../src/relay/server.js'

let splicer: NativeSplicer | undefined

/** The relay path asked for: 'native' only when the addon loads (the suite file checks that first). */
export function relayPath (): 'native' | 'js' {
  return process.env.KT_TEST_RELAY_PATH === 'native' ? 'native' : 'js'
}

/** startRelay over the path asked for; on the lane, a relay that stays in JS fails the test. */
export async function startTestRelay (opts: RelayOptions): Promise<RelayHandle> {
  if (relayPath() === 'js' || opts.now !== undefined) return await startRelay(opts)
  splicer ??= loadNativeSplicer()
  if (splicer === undefined) throw new Error('KT_TEST_RELAY_PATH=native, but the addon does not load')
  const r = await startRelay({ ...opts, native: splicer })
  if (r.acceptPath !== 'native') {
    r.destroy()
    throw new Error(`KT_TEST_RELAY_PATH=native, but the relay accepts in JS: ${r.acceptWhy ?? '?'}`)
  }
  return r
}

/**
 * test/relay/native/*: run a relay suite (its module, imported by `load`)
 * again over the addon's lane, or skip the file when the addon does not
 * load (a failure under KT_REQUIRE_NATIVE=1).
 */
export async function overTheLane (load: () => Promise<unknown>): Promise<void> {
  const probe = loadNativeSplicer()
  probe?.close()
  const skip = nativeSkip(probe === undefined ? `the native addon is not available: ${nativeUnavailableReason() ?? '?'}` : false)
  if (skip !== false) { t.plan(0, skip); return }
  process.env.KT_TEST_RELAY_PATH = 'native'
  await load()
}
