// Issue 13: the relay splices natively when the addon loads (src/relay/splice.ts
// with useNativeSplicer), with the JS splice's contract: bytes a JS write queued
// just before (the relay's reply) go first, FINs pass as FINs, a reset passes as
// a reset, and `done` comes once both sockets have closed.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { loadNativeSplicer, type NativeSplicer } from '../../src/dataplane/native/index.js'
import { splice, spliceKind, useNativeSplicer, type SpliceResult } from '../../src/relay/splice.js'
import { waitFor } from '../support/net.js'

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

function readAll (s: Socket): Promise<Buffer> {
  const parts: Buffer[] = []
  return new Promise((resolve, reject) => {
    s.on('data', (d: Buffer) => parts.push(d))
    s.once('end', () => resolve(Buffer.concat(parts)))
    s.once('error', reject)
  })
}

/** A connected pair of TCP sockets on loopback: [the side we keep, the side handed to splice]. */
async function pair (server: Server, port: number): Promise<[Socket, Socket]> {
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve))
  const c = connect({ port, host: '127.0.0.1', allowHalfOpen: true })
  await new Promise((resolve) => c.once('connect', resolve))
  return [c, await accepted]
}

let splicer: NativeSplicer | undefined
try { splicer = loadNativeSplicer() } catch { splicer = undefined }
if (splicer === undefined) t.plan(0, 'the native addon is not built')
else {
  const n = splicer
  const server = createServer({ allowHalfOpen: true, pauseOnConnect: true })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  useNativeSplicer(n)
  t.teardown(() => { useNativeSplicer(undefined); n.close(); server.close() })

  t.test('native: the reply first, 1 MiB each way byte-exact, half-close both ways, done once both closed', async (t) => {
    t.equal(spliceKind(), 'native')
    const [client, a] = await pair(server, port)
    const [backend, b] = await pair(server, port)
    const up = randomBytes(1 << 20)
    const down = randomBytes(1 << 20)
    const clientGot = readAll(client)
    const backendGot = readAll(backend)
    a.write('OK\n') // as the relay writes its reply right before splicing
    let result: SpliceResult | undefined
    let closedAtDone = false
    splice(a, b, (r) => { result = r; closedAtDone = a.closed && b.closed })
    await waitFor(() => n.stats().pairs === 1, 5000, 'the pair on the native threads')
    client.end(up)
    const gotUp = await backendGot
    backend.end(down)
    const gotDown = await clientGot
    t.equal(gotDown.subarray(0, 3).toString(), 'OK\n', 'the reply JS wrote comes first')
    t.equal(sha(gotDown.subarray(3)), sha(down), 'backend → client intact')
    t.equal(sha(gotUp), sha(up), 'client → backend intact')
    await waitFor(() => result !== undefined, 5000, 'done')
    t.same(result, { aToB: up.length, bToA: down.length, end: 'closed' })
    t.ok(closedAtDone, 'done came after both sockets closed')
    client.destroy()
    backend.destroy()
  })

  t.test('native: a reset on one side is a reset on the other', async (t) => {
    const [client, a] = await pair(server, port)
    const [backend, b] = await pair(server, port)
    let result: SpliceResult | undefined
    splice(a, b, (r) => { result = r })
    await waitFor(() => n.stats().pairs === 1, 5000, 'the pair on the native threads')
    const clientErr = new Promise<string>((resolve) => {
      client.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'))
      client.once('close', () => resolve('closed'))
    })
    backend.resetAndDestroy()
    t.equal(await clientErr, 'ECONNRESET')
    await waitFor(() => result !== undefined, 5000, 'done')
    t.equal(result?.end, 'reset')
  })

  t.test('a side that already ended stays in the JS splice', async (t) => {
    const [client, a] = await pair(server, port)
    const [backend, b] = await pair(server, port)
    a.resume()
    client.end()
    await new Promise((resolve) => a.once('end', resolve))
    let result: SpliceResult | undefined
    splice(a, b, (r) => { result = r })
    t.equal(n.stats().pairs, 0, 'not handed to native')
    const got = readAll(client)
    backend.end('after-fin')
    t.equal((await got).toString(), 'after-fin')
    backend.destroy()
    await waitFor(() => result !== undefined, 5000, 'done')
    t.equal(result?.end, 'closed')
  })
}
