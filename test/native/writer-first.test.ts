// A backend that speaks first (SMTP/MySQL-style banner), bytes JS had already
// buffered at the handoff, and peeked bytes passed as headAtoB: none is lost
// and each goes out in stream order.
import t from 'tap'
import { once } from 'node:events'
import type { Socket } from 'node:net'
import { MODES, SKIP, collect, connect, splicerFor, startBackend, startProxy, waitFor, within } from './fixtures/harness.js'

// Let JS pull bytes into the socket's own buffer before the handoff.
async function bufferInJs (s: Socket, atLeast: number): Promise<void> {
  s.on('readable', noop)
  await waitFor(() => s.readableLength >= atLeast, 'bytes buffered in JS', 5000)
  s.off('readable', noop)
}
function noop (): void {}

for (const mode of MODES) {
  t.test(`${mode}: backend writes first, handoff inside 'connect'`, { skip: SKIP }, async (t) => {
    const splicer = splicerFor(t, mode)
    const banner = Buffer.alloc(200_000, 'b')
    const backend = await startBackend(t, (s) => {
      s.write(banner)
      s.on('data', (d: Buffer) => { if (d.includes('QUIT')) s.end('221 bye\r\n') })
    })
    const proxy = await startProxy(t, splicer, backend.port, { idleTimeoutMs: 10_000 })
    const client = await connect(proxy.port)
    t.teardown(() => client.destroy())
    const got = collect(client, true)
    await waitFor(() => got.state.bytes >= banner.length, 'banner', 5000)
    client.write('QUIT\r\n')
    const c = await within(got.done, 5000, 'client EOF')
    t.equal(c.bytes, banner.length + 9)
    t.ok(c.text().endsWith('221 bye\r\n'))
    client.end()
    await proxy.waitResults(1, 5000)
    t.same(proxy.results[0], { aToB: 6, bToA: banner.length + 9, cause: 'eof' })
  })

  t.test(`${mode}: bytes already buffered in both JS sockets are moved first`, { skip: SKIP }, async (t) => {
    const splicer = splicerFor(t, mode)
    let backendGot: ReturnType<typeof collect> | undefined
    const backend = await startBackend(t, (s) => {
      backendGot = collect(s, true)
      s.write('from-backend-1;')
    })
    const proxy = await startProxy(t, splicer, backend.port, {
      idleTimeoutMs: 10_000,
      beforeSplice: async (c, u) => {
        await bufferInJs(c, 'from-client-1;'.length)
        await bufferInJs(u, 'from-backend-1;'.length)
        return { idleTimeoutMs: 10_000, headAtoB: Buffer.from('peeked;') }
      },
    })
    const client = await connect(proxy.port)
    t.teardown(() => client.destroy())
    const got = collect(client, true)
    client.write('from-client-1;')
    await waitFor(() => got.state.bytes >= 15, 'first backend bytes', 5000)
    client.write('from-client-2;')
    backend.sockets[0]?.end('from-backend-2;')
    await within(got.done, 5000, 'client EOF')
    client.end()
    t.ok(backendGot)
    const b = await within(backendGot!.done, 5000, 'backend EOF')
    t.equal(b.text(), 'peeked;from-client-1;from-client-2;', 'head, then JS-buffered bytes, then spliced bytes')
    t.equal(got.state.text(), 'from-backend-1;from-backend-2;')
    await proxy.waitResults(1, 5000)
    t.same(proxy.results[0], { aToB: 35, bToA: 30, cause: 'eof' }, 'counts include the head and the moved bytes')
  })

  t.test(`${mode}: client writes first, before the upstream exists`, { skip: SKIP }, async (t) => {
    const splicer = splicerFor(t, mode)
    let backendGot: ReturnType<typeof collect> | undefined
    const backend = await startBackend(t, (s) => {
      backendGot = collect(s, true)
      s.on('end', () => s.end('ok'))
    })
    const proxy = await startProxy(t, splicer, backend.port, { idleTimeoutMs: 10_000 })
    const client = await connect(proxy.port)
    t.teardown(() => client.destroy())
    const got = collect(client, true)
    client.end('GET / HTTP/1.0\r\n\r\n')
    await once(client, 'finish')
    await within(got.done, 5000, 'client EOF')
    t.equal(got.state.text(), 'ok')
    t.equal(backendGot?.state.text(), 'GET / HTTP/1.0\r\n\r\n')
    await proxy.waitResults(1, 5000)
    t.equal(proxy.results[0]?.cause, 'eof')
  })
  t.test(`${mode}: a leftover 'data' listener does not see the bytes handed to native`, { skip: SKIP }, async (t) => {
    const splicer = splicerFor(t, mode)
    let backendGot: ReturnType<typeof collect> | undefined
    const backend = await startBackend(t, (s) => {
      backendGot = collect(s, true)
      s.on('end', () => s.end())
    })
    const seen: Buffer[] = []
    let seenAtHandoff = -1
    let paused: () => void = noop
    const pausedP = new Promise<void>((resolve) => { paused = resolve })
    const proxy = await startProxy(t, splicer, backend.port, {
      idleTimeoutMs: 10_000,
      beforeSplice: async (c) => {
        // A peek done with a 'data' listener, then pause(): later bytes pile up in JS.
        c.on('data', (d: Buffer) => seen.push(d))
        c.resume()
        await waitFor(() => seen.length > 0, 'peeked bytes', 5000)
        c.pause()
        paused()
        await waitFor(() => c.readableLength >= 'part2;'.length, 'bytes buffered while paused', 5000)
        seenAtHandoff = seen.length
        return { idleTimeoutMs: 10_000, headAtoB: Buffer.concat(seen) }
      },
    })
    const client = await connect(proxy.port)
    t.teardown(() => client.destroy())
    const got = collect(client)
    client.write('part1;')
    await within(pausedP, 5000, 'proxy paused')
    client.write('part2;')
    await waitFor(() => proxy.handles.length === 1, 'handoff', 5000)
    client.end('part3;')
    await within(got.done, 5000, 'client EOF')
    const b = await within(backendGot!.done, 5000, 'backend EOF')
    t.equal(b.text(), 'part1;part2;part3;')
    t.equal(seen.length, seenAtHandoff, 'the listener saw nothing after the handoff')
    await proxy.waitResults(1, 5000)
    t.same(proxy.results[0], { aToB: 18, bToA: 0, cause: 'eof' })
  })
}
