// Which accept path the relay tests run over: JS by default, or the addon's
// lane (kt_relay.c) when KT_TEST_RELAY_PATH=native. test/relay/native-suite
// runs the relay's protocol suites again that way, so every refusal, splice
// and pool case holds for both paths (the differential test of kt_relay.c).
import { loadNativeSplicer, type NativeSplicer } from '../../src/dataplane/native/index.js'
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
