// abort() stops one pair now (cause 'aborted', both sides reset); close()
// aborts every pair, each still reported once; a closed splicer refuses more.
import t from 'tap'
import type { Socket } from 'node:net'
import { MODES, SKIP, collect, connect, outcome, splicerFor, startBackend, startProxy, waitFor, within } from './fixtures/harness.js'

for (const mode of MODES) {
  t.test(`${mode}: abort() mid-transfer resets both sides`, { skip: SKIP }, async (t) => {
    const splicer = splicerFor(t, mode)
    let backendOutcome: Promise<string> | undefined
    const backend = await startBackend(t, (s) => {
      backendOutcome = outcome(s)
      s.write(Buffer.alloc(100_000, 1))
    })
    const proxy = await startProxy(t, splicer, backend.port, { idleTimeoutMs: 10_000 })
    const client = await connect(proxy.port)
    const got = collect(client)
    await waitFor(() => got.state.bytes === 100_000 && proxy.handles.length === 1, 'transfer', 5000)
    proxy.handles[0]!.abort()
    await within(got.done, 5000, 'client close')
    t.equal(got.state.errorCode, 'ECONNRESET', 'client reset')
    t.equal(await within(backendOutcome!, 5000, 'backend outcome'), 'ECONNRESET', 'backend reset')
    await proxy.waitResults(1, 5000)
    t.same(proxy.results[0], { aToB: 0, bToA: 100_000, cause: 'aborted' })
    proxy.handles[0]!.abort()  // after done: a no-op
    t.equal(proxy.results.length, 1, 'done ran once')
  })

  t.test(`${mode}: close() aborts every live pair and refuses new ones`, { skip: SKIP }, async (t) => {
    const splicer = splicerFor(t, mode)
    const backend = await startBackend(t, (s) => { s.resume() })
    const proxy = await startProxy(t, splicer, backend.port, { idleTimeoutMs: 10_000 })
    const clients: Socket[] = []
    for (let i = 0; i < 10; i++) {
      const c = await connect(proxy.port)
      c.on('error', () => {})
      clients.push(c)
    }
    t.teardown(() => { for (const c of clients) c.destroy() })
    await waitFor(() => splicer.stats().pairs === 10, '10 live pairs', 5000)
    splicer.close()
    await proxy.waitResults(10, 5000)
    t.same(new Set(proxy.results.map((r) => r.cause)), new Set(['aborted']))
    t.equal(splicer.stats().pairs, 0)
    const a = await connect(proxy.port)
    t.teardown(() => a.destroy())
    // The proxy's next handoff throws KT_ERR_NATIVE_CLOSED; it reports that as an error result.
    await proxy.waitResults(11, 5000)
    t.match(proxy.results[10]?.errno, /closed/)
    t.throws(() => splicer.splice(a, a, { idleTimeoutMs: 0 }, () => {}), { code: 'KT_ERR_NATIVE_CLOSED' })
  })
}
