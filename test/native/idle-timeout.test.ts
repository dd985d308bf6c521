// The idle timeout lives in native: no byte either way for idleTimeoutMs ends
// the pair with both sides reset (the pure-JS path resets too); traffic in
// either direction keeps it alive.
import t from 'tap'
import { MODES, SKIP, collect, connect, outcome, splicerFor, startBackend, startProxy, waitFor, within, sleep } from './fixtures/harness.js'

for (const mode of MODES) {
  t.test(`${mode}: a quiet pair is reset after idleTimeoutMs`, { skip: SKIP }, async (t) => {
    const splicer = splicerFor(t, mode)
    let backendOutcome: Promise<string> | undefined
    const backend = await startBackend(t, (s) => {
      backendOutcome = outcome(s)
      s.write('hi')
    })
    const proxy = await startProxy(t, splicer, backend.port, { idleTimeoutMs: 300 })
    const client = await connect(proxy.port)
    const result = outcome(client)
    const t0 = Date.now()
    t.equal(await within(result, 5000, 'client outcome'), 'ECONNRESET', 'client reset')
    const took = Date.now() - t0
    t.ok(took >= 250 && took < 3000, `idle after ${took} ms`)
    await waitFor(() => backendOutcome !== undefined, 'backend socket', 5000)
    t.equal(await within(backendOutcome!, 5000, 'backend outcome'), 'ECONNRESET', 'backend reset')
    await proxy.waitResults(1, 5000)
    t.same(proxy.results[0], { aToB: 0, bToA: 2, cause: 'idle-timeout' })
  })

  t.test(`${mode}: traffic in one direction only keeps the pair alive`, { skip: SKIP }, async (t) => {
    const splicer = splicerFor(t, mode)
    const backend = await startBackend(t, (s) => { s.resume() })
    // A tick every 100 ms against 1000 ms: only a 900 ms stall of this
    // process could make the pair look idle.
    const proxy = await startProxy(t, splicer, backend.port, { idleTimeoutMs: 1000 })
    const client = await connect(proxy.port)
    const got = collect(client)
    for (let i = 0; i < 10; i++) {
      client.write('tick')
      await sleep(100)
    }
    t.equal(proxy.results.length, 0, 'alive after 1 s of ticks every 100 ms')
    await proxy.waitResults(1, 5000)
    t.same(proxy.results[0], { aToB: 40, bToA: 0, cause: 'idle-timeout' })
    await within(got.done, 5000, 'client close')
    t.equal(got.state.errorCode, 'ECONNRESET')
  })

  t.test(`${mode}: idleTimeoutMs 0 never times out`, { skip: SKIP }, async (t) => {
    const splicer = splicerFor(t, mode)
    const backend = await startBackend(t, (s) => { s.resume() })
    const proxy = await startProxy(t, splicer, backend.port, { idleTimeoutMs: 0, halfCloseTimeoutMs: 0 })
    const client = await connect(proxy.port)
    t.teardown(() => client.destroy())
    await sleep(400)
    t.equal(proxy.results.length, 0)
    t.equal(splicer.stats().pairs, 1)
  })
}
