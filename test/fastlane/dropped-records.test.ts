// Issue 15: the lane's stats layout had S_ROUTES = S_ACCEPT_OTHER + 2 on the
// TS side, skipping S_DROPPED, and nothing read it: records the workers could
// not queue for JS (no memory for the ring, or the ring full) were never
// reported. The layout is generated for both sides now (vocab.json) and the
// count is kt_native_events_dropped_total. The test variant makes the ring's
// allocation fail once: the close record of one connection is dropped.
import t from 'tap'
import { dial, readAll, startServer, waitFor } from '../support/net.js'
import { laneBindingOf } from '../../src/dataplane/native/index.js'
import { SITE, variantAddon, variantSkip } from '../native/fixtures/variant.js'
import { startLaneProxy } from './lane-proxy.js'

const skip = await variantSkip()

t.test('a dropped record is counted in kt_native_events_dropped_total', { skip }, async (t) => {
  const saved = process.env['KT_NATIVE_ADDON']
  process.env['KT_NATIVE_ADDON'] = variantAddon()
  t.teardown(() => { if (saved === undefined) delete process.env['KT_NATIVE_ADDON']; else process.env['KT_NATIVE_ADDON'] = saved })
  const a = await startServer((s) => { s.end('A') })
  t.teardown(() => a.close())
  const px = await startLaneProxy([{ host: '127.0.0.1', port: 0, routes: [], default: { id: 'u', endpoints: [{ host: '127.0.0.1', port: a.port }] } }], { accessLog: true })
  t.teardown(() => px.close())
  const kt = (laneBindingOf(px.splicer)?.binding as unknown as { ktTest: (op: number, a: number, v: number) => number }).ktTest
  kt(0, SITE.ring, 1)
  t.teardown(() => { kt(0, SITE.ring, 0) })
  const c = await dial(px.ports[0] as number)
  c.end()
  t.equal((await readAll(c)).toString(), 'A')
  let text = ''
  await waitFor(() => { text = px.registry.render(); return /kt_connections_total\{[^}]*outcome="eof"\} 1/.test(text) }, 'the connection counted', 5000)
  await waitFor(() => { text = px.registry.render(); return /^kt_native_events_dropped_total 1$/m.test(text) }, 'the dropped record counted', 5000)
  t.match(text, /^kt_native_events_dropped_total 1$/m)
  t.equal(px.logs.filter((r) => r['msg'] === 'connection closed').length, 0, 'its access-log line was the record dropped')
})
