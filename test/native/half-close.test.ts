// EOF on one side becomes shutdown(SHUT_WR) on the other once everything read
// has been written; the other direction keeps flowing. Both orders, both modes.
import t from 'tap'
import { MODES, SKIP, collect, connect, splicerFor, startBackend, startProxy, within, sleep } from './fixtures/harness.js'

for (const mode of MODES) {
  t.test(`${mode}: client ends first, backend answers after seeing EOF`, { skip: SKIP }, async (t) => {
    const splicer = splicerFor(t, mode)
    const backend = await startBackend(t, (s) => {
      const got = collect(s, true)
      void got.done.then((c) => {
        // The request ended with FIN, and only then does the backend answer.
        s.write(`got ${c.bytes} bytes: ${c.text()}`)
        setTimeout(() => s.end(' (bye)'), 50)
      })
    })
    const proxy = await startProxy(t, splicer, backend.port, { idleTimeoutMs: 10_000 })
    const client = await connect(proxy.port)
    t.teardown(() => client.destroy())
    const got = collect(client, true)
    client.write('hello ')
    await sleep(20)
    client.end('world')
    const c = await within(got.done, 5000, 'client end')
    t.equal(c.text(), 'got 11 bytes: hello world (bye)', 'response after the half-close, then EOF')
    t.ok(c.ended, 'client saw EOF')
    t.equal(c.errorCode, undefined)
    await proxy.waitResults(1, 5000)
    t.same(proxy.results[0], { aToB: 11, bToA: 31, cause: 'eof' })
  })

  t.test(`${mode}: backend ends first, client keeps sending`, { skip: SKIP }, async (t) => {
    const splicer = splicerFor(t, mode)
    let backendGot: ReturnType<typeof collect> | undefined
    const backend = await startBackend(t, (s) => {
      backendGot = collect(s, true)
      s.end('banner then FIN\n')
    })
    const proxy = await startProxy(t, splicer, backend.port, { idleTimeoutMs: 10_000 })
    const client = await connect(proxy.port)
    t.teardown(() => client.destroy())
    const got = collect(client, true)
    const c = await within(got.done, 5000, 'client EOF')
    t.equal(c.text(), 'banner then FIN\n')
    t.ok(c.ended, 'client saw the backend FIN')
    // The other direction still flows after the half-close.
    for (let i = 0; i < 5; i++) {
      client.write(`late ${i};`)
      await sleep(10)
    }
    t.equal(proxy.results.length, 0, 'pair still open while one direction flows')
    client.end()
    t.ok(backendGot)
    const b = await within(backendGot!.done, 5000, 'backend EOF')
    t.equal(b.text(), 'late 0;late 1;late 2;late 3;late 4;')
    t.ok(b.ended, 'backend saw the client FIN')
    await proxy.waitResults(1, 5000)
    t.same(proxy.results[0], { aToB: 35, bToA: 16, cause: 'eof' })
  })

  t.test(`${mode}: a half-closed pair that goes quiet ends after halfCloseTimeoutMs`, { skip: SKIP }, async (t) => {
    const splicer = splicerFor(t, mode)
    const backend = await startBackend(t, (s) => { s.resume() })
    const proxy = await startProxy(t, splicer, backend.port, { idleTimeoutMs: 20_000, halfCloseTimeoutMs: 200 })
    const client = await connect(proxy.port)
    t.teardown(() => client.destroy())
    const got = collect(client)
    const t0 = Date.now()
    client.end('done sending')
    await proxy.waitResults(1, 5000)
    const took = Date.now() - t0
    t.equal(proxy.results[0]?.cause, 'idle-timeout')
    t.ok(took >= 150 && took < 3000, `ended after ${took} ms`)
    const c = await within(got.done, 5000, 'client close')
    t.equal(c.errorCode, 'ECONNRESET', 'the client is reset, as the pure-JS path does')
  })
}
