// Issue 15 bug 3: allocation failures in the addon (fault injection in the
// test variant). A pair's completion could not be allocated when the pair
// ended, so JS never heard of it (its done never ran, the pair stayed pending
// forever); createLane's error paths leaked what they had allocated.
import t from 'tap'
import net from 'node:net'
import { connect, startBackend, waitFor, within } from './fixtures/harness.js'
import { PROBE, SITE, variantSkip, variantSplicer } from './fixtures/variant.js'
import type { SpliceResult } from '../../src/dataplane/native/index.js'

const skip = await variantSkip()

t.test('no memory for a completion: the pair is refused up front or reported, never left pending', { skip }, async (t) => {
  const { splicer, hooks } = variantSplicer(t)
  const be = await startBackend(t, (s) => { s.pipe(s) })
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.close() })
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve))
  const client = await connect((server.address() as net.AddressInfo).port)
  t.teardown(() => client.destroy())
  client.on('error', () => {}) // reset by the abort when the pair is taken
  const a = await accepted
  const b = await connect(be.port)
  a.on('error', () => {})
  b.on('error', () => {})
  t.teardown(() => { a.destroy(); b.destroy() })
  hooks.failAlloc(SITE.completion, 1)
  t.teardown(() => { hooks.failAlloc(SITE.completion, 0) })
  let result: SpliceResult | undefined
  let refused: unknown
  try {
    const h = splicer.splice(a, b, { idleTimeoutMs: 0 }, (r) => { result = r })
    h.abort() // ends the pair now: its completion is due
  } catch (err) {
    refused = err
  }
  if (refused !== undefined) {
    t.match(refused, { code: 'KT_ERR_NATIVE_SPLICE' }, 'refused synchronously with a stable code')
    // The caller still owns both sockets, nothing lost: JS can proxy them itself.
    a.pipe(b)
    b.pipe(a)
    a.resume()
    const echoed = new Promise<string>((resolve) => client.once('data', (d: Buffer) => resolve(d.toString())))
    client.write('still mine')
    t.equal(await within(echoed, 5000, 'echo through the JS-owned sockets'), 'still mine')
  } else {
    await waitFor(() => result !== undefined, 'the pair\'s done', 5000)
    t.equal(result?.cause, 'aborted')
  }
  t.equal(splicer.stats().pairs, 0, 'nothing pending')
})

t.test('createLane frees what it allocated when it fails', { skip }, async (t) => {
  const { lane: b, engines, hooks } = variantSplicer(t)
  const live = hooks.probe(PROBE.liveLanes)
  t.throws(() => b.createLane(engines, () => {}, [0.1, 0.05]), /ascend/)
  t.throws(() => b.createLane(engines, () => {}, [-1]), /bad connect bucket/)
  t.throws(() => b.createLane([{}], () => {}), /not a splice engine/)
  t.throws(() => b.createLane(engines, () => {}, Array.from({ length: 40 }, (_, i) => i)), /too many/)
  t.equal(hooks.probe(PROBE.liveLanes), live, 'no lane left allocated by a failed createLane')
})
