// A clean end never becomes a reset: both peers see FIN and a close without
// error, the cause is 'eof' with no errno, also when a peer closes its socket
// fully once it has everything.
import t from 'tap'
import { MODES, SKIP, collect, connect, splicerFor, startBackend, startProxy, within } from './fixtures/harness.js'

for (const mode of MODES) {
  t.test(`${mode}: request/response with FIN both ways stays clean`, { skip: SKIP }, async (t) => {
    const splicer = splicerFor(t, mode)
    const closes: Array<Promise<boolean>> = []
    const backend = await startBackend(t, (s) => {
      closes.push(new Promise((resolve) => s.once('close', resolve)))
      s.resume()
      s.on('end', () => s.end('HTTP/1.0 200 OK\r\n\r\nok'))
    })
    const proxy = await startProxy(t, splicer, backend.port, { idleTimeoutMs: 10_000 })
    for (let i = 0; i < 20; i++) {
      const client = await connect(proxy.port)
      const got = collect(client, true)
      const closed = new Promise<boolean>((resolve) => client.once('close', resolve))
      client.end('GET / HTTP/1.0\r\n\r\n')
      const c = await within(got.done, 5000, 'response')
      t.equal(c.text(), 'HTTP/1.0 200 OK\r\n\r\nok')
      client.destroy()  // a full close once everything arrived
      t.equal(await closed, false, 'client closed without error')
      t.equal(c.errorCode, undefined)
    }
    await proxy.waitResults(20, 5000)
    t.equal(proxy.results.filter((r) => r.cause === 'eof' && r.errno === undefined && r.aToB === 18 && r.bToA === 21).length, 20, 'all eof')
    const hadError = await within(Promise.all(closes), 5000, 'backend closes')
    t.same(hadError, new Array(20).fill(false), 'no backend socket saw an error')
  })

  t.test(`${mode}: backend closes fully after its answer, client reads it all`, { skip: SKIP }, async (t) => {
    const splicer = splicerFor(t, mode)
    const backend = await startBackend(t, (s) => {
      s.once('data', () => { s.end(Buffer.alloc(300_000, 'x')); s.once('finish', () => s.destroySoon()) })
    })
    const proxy = await startProxy(t, splicer, backend.port, { idleTimeoutMs: 10_000 })
    const client = await connect(proxy.port)
    const got = collect(client)
    client.write('go')
    const c = await within(got.done, 5000, 'answer')
    t.equal(c.bytes, 300_000)
    t.ok(c.ended)
    client.end()
    await proxy.waitResults(1, 5000)
    t.same(proxy.results[0], { aToB: 2, bToA: 300_000, cause: 'eof' })
  })
}
