// An RST on one side becomes an RST on the other (reported reset-a / reset-b
// with the errno), whether the pair was quiet or moving bytes at the time.
import t from 'tap'
import { MODES, SKIP, collect, connect, outcome, splicerFor, startBackend, startProxy, waitFor, within, sleep } from './fixtures/harness.js'

for (const mode of MODES) {
  t.test(`${mode}: client RST resets the backend (reset-a)`, { skip: SKIP }, async (t) => {
    const splicer = splicerFor(t, mode)
    let backendOutcome: Promise<string> | undefined
    const backend = await startBackend(t, (s) => {
      backendOutcome = outcome(s)
      s.write('hello')
    })
    const proxy = await startProxy(t, splicer, backend.port, { idleTimeoutMs: 10_000 })
    const client = await connect(proxy.port)
    const got = collect(client)
    await waitFor(() => got.state.bytes === 5, 'greeting', 5000)
    client.resetAndDestroy()
    await waitFor(() => backendOutcome !== undefined, 'backend socket', 5000)
    t.equal(await within(backendOutcome!, 5000, 'backend outcome'), 'ECONNRESET', 'backend sees a reset, not an EOF')
    await proxy.waitResults(1, 5000)
    t.same(proxy.results[0], { aToB: 0, bToA: 5, cause: 'reset-a', errno: 'ECONNRESET' })
  })

  t.test(`${mode}: backend RST resets the client (reset-b)`, { skip: SKIP }, async (t) => {
    const splicer = splicerFor(t, mode)
    const backend = await startBackend(t, (s) => {
      s.once('data', () => s.resetAndDestroy())
    })
    const proxy = await startProxy(t, splicer, backend.port, { idleTimeoutMs: 10_000 })
    const client = await connect(proxy.port)
    const result = outcome(client)
    client.write('boom')
    t.equal(await within(result, 5000, 'client outcome'), 'ECONNRESET', 'client sees a reset, not an EOF')
    await proxy.waitResults(1, 5000)
    t.same(proxy.results[0], { aToB: 4, bToA: 0, cause: 'reset-b', errno: 'ECONNRESET' })
  })

  t.test(`${mode}: RST while bulk is flowing toward the reset side`, { skip: SKIP }, async (t) => {
    const splicer = splicerFor(t, mode)
    const chunk = Buffer.alloc(256 * 1024, 7)
    let stop = false
    t.teardown(() => { stop = true })
    const backend = await startBackend(t, (s) => {
      const pump = (): void => {
        while (!stop && !s.destroyed && s.write(chunk)) { /* fill */ }
        if (!stop && !s.destroyed) s.once('drain', pump)
      }
      pump()
    })
    const proxy = await startProxy(t, splicer, backend.port, { idleTimeoutMs: 10_000 })
    const client = await connect(proxy.port)
    const got = collect(client)
    await waitFor(() => got.state.bytes > 4 * 1024 * 1024, 'bulk flowing', 10_000)
    const backendOutcome = outcome(backend.sockets[0]!)
    client.resetAndDestroy()
    t.equal(await within(backendOutcome, 5000, 'backend outcome'), 'ECONNRESET')
    await proxy.waitResults(1, 5000)
    const r = proxy.results[0]
    t.equal(r?.cause, 'reset-a')
    t.ok(r?.errno === 'ECONNRESET' || r?.errno === 'EPIPE', `errno ${String(r?.errno)}`)
  })

  t.test(`${mode}: RST after a half-close is still a reset`, { skip: SKIP }, async (t) => {
    const splicer = splicerFor(t, mode)
    const backend = await startBackend(t, (s) => { s.resume() })
    const proxy = await startProxy(t, splicer, backend.port, { idleTimeoutMs: 10_000 })
    const client = await connect(proxy.port)
    client.on('error', () => {})
    client.end('request then FIN')
    await waitFor(() => backend.sockets[0]?.readableEnded === true, 'FIN at the backend', 5000)
    // The a->b direction is complete and b->a is quiet: only the RST's EPOLLERR tells.
    client.resetAndDestroy()
    await proxy.waitResults(1, 5000)
    t.equal(proxy.results[0]?.cause, 'reset-a')
    t.equal(proxy.results[0]?.errno, 'EPIPE', 'an RST after FIN is reported as EPIPE by the kernel')
    // The backend already had EOF and is not reading: it learns of the RST when it writes.
    const s = backend.sockets[0]!
    const failed = outcome(s)
    s.write('anyone there?')
    const code = await within(failed, 5000, 'backend outcome')
    t.ok(code === 'ECONNRESET' || code === 'EPIPE', `backend write fails with ${code}`)
  })
}
