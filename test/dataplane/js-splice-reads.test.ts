// The JS splice reads with Node's `onread` (a buffer per socket, no 'data'
// events) where it can, and with 'data' events where it cannot. Both must
// carry every byte, every FIN and every reset: the behaviour files run again
// with KT_JS_SPLICE=stream, and the cases here check which mode a socket got,
// that its buffer grows under bulk, and that a held buffer is never reused.
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createServer, connect, type Socket, type Server, type AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { splice, onFirstSplicedRead, spliceReadsOf, spliceReadBufferSize, jsSpliceReads, type SpliceResult } from '../../src/dataplane/splice.js'

t.test('this Node supports onread reads (a Node that drops them must fail here, not slow down quietly)', async (t) => {
  t.equal(jsSpliceReads(), process.env.KT_JS_SPLICE === 'stream' ? 'stream' : 'onread')
})

/** A connected pair: [the side handed to splice, the far end the test drives]. */
async function pair (): Promise<{ near: Socket, far: Socket, server: Server }> {
  const server = createServer({ allowHalfOpen: true })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const accepted = once(server, 'connection')
  const far = connect({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true })
  await once(far, 'connect')
  const [near] = await accepted as [Socket]
  return { near, far, server }
}

async function spliced (t: Test, before?: (client: Socket) => Promise<void>): Promise<{ client: Socket, upstream: Socket, user: Socket, backend: Socket, result: Promise<SpliceResult> }> {
  const a = await pair()
  const b = await pair()
  t.teardown(() => { for (const s of [a.near, a.far, b.near, b.far]) s.destroy(); a.server.close(); b.server.close() })
  a.near.pause()
  b.near.pause()
  if (before !== undefined) await before(a.near)
  let done!: (r: SpliceResult) => void
  const result = new Promise<SpliceResult>((resolve) => { done = resolve })
  splice(a.near, b.near, { idleTimeoutMs: 30_000 }, done)
  return { client: a.near, upstream: b.near, user: a.far, backend: b.far, result }
}

function sha (b: Buffer): string { return createHash('sha256').update(b).digest('hex') }

function collect (s: Socket): Promise<Buffer> {
  const parts: Buffer[] = []
  s.on('data', (d: Buffer) => parts.push(d))
  return new Promise((resolve, reject) => { s.once('end', () => resolve(Buffer.concat(parts))); s.once('error', reject) })
}

const onreadHere = jsSpliceReads() === 'onread'

t.test('both TCP sockets read with onread; a 4 KiB buffer grows to 64 KiB under bulk; bytes exact both ways', { skip: onreadHere ? false : 'KT_JS_SPLICE=stream' }, async (t) => {
  const p = await spliced(t)
  t.equal(spliceReadsOf(p.client), 'onread')
  t.equal(spliceReadsOf(p.upstream), 'onread')
  t.equal(spliceReadBufferSize(p.client), 512, 'starts at 512 bytes')
  const up = randomBytes(8 * 1024 * 1024)
  const down = randomBytes(3 * 1024 * 1024 + 17)
  const gotUp = collect(p.backend)
  const gotDown = collect(p.user)
  p.user.end(up)
  p.backend.end(down)
  t.equal(sha(await gotUp), sha(up), 'client → upstream byte-exact')
  t.equal(sha(await gotDown), sha(down), 'upstream → client byte-exact')
  t.equal(spliceReadBufferSize(p.client), 65536, 'grew to 64 KiB')
  const r = await p.result
  t.equal(r.cause, 'eof')
  t.equal(r.clientToUpstream, up.length)
  t.equal(r.upstreamToClient, down.length)
})

t.test('a slow reader: writes the kernel does not take whole keep their buffer; the next read gets a new one (sha-checked)', { skip: onreadHere ? false : 'KT_JS_SPLICE=stream' }, async (t) => {
  const p = await spliced(t)
  const up = randomBytes(16 * 1024 * 1024)
  p.backend.pause() // the backend reads nothing for a while: the splice's writes back up
  const writing = new Promise<void>((resolve) => p.user.end(up, resolve))
  // Wait (bounded) until the splice stopped reading: its write side is over the high-water mark.
  const deadline = Date.now() + 10_000
  while (p.upstream.writableLength === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5))
  t.ok(p.upstream.writableLength > 0, `backpressure reached (upstream holds ${p.upstream.writableLength} bytes)`)
  const got = collect(p.backend)
  p.backend.resume()
  await writing
  t.equal(sha(await got), sha(up), 'every byte, in order, none overwritten')
  p.backend.end()
  const r = await p.result
  t.equal(r.clientToUpstream, up.length)
})

t.test('bytes buffered in the stream before the splice: that socket reads with data events, nothing lost', async (t) => {
  const p = await spliced(t, async (client) => {
    // Let bytes reach the client socket's stream buffer while it is paused.
    client.resume()
    client.pause()
    await new Promise<void>((resolve) => { client.once('readable', resolve); client.unshift(Buffer.from('early:')) })
  })
  t.equal(spliceReadsOf(p.client), 'data', 'a socket with buffered bytes uses data events')
  t.equal(spliceReadsOf(p.upstream), onreadHere ? 'onread' : 'data')
  const got = collect(p.backend)
  p.user.end('late')
  t.equal((await got).toString(), 'early:late')
  p.backend.end()
  await p.result
})

t.test('a socket someone else reads with data events keeps them (they would see nothing otherwise); onFirstSplicedRead fires in both modes', async (t) => {
  const seen: string[] = []
  const p = await spliced(t, async (client) => { client.on('data', (d: Buffer) => seen.push(d.toString())) })
  t.equal(spliceReadsOf(p.client), 'data')
  let first = 0
  onFirstSplicedRead(p.upstream, () => { first++ })
  const got = collect(p.backend)
  p.user.end('to the backend')
  t.equal((await got).toString(), 'to the backend')
  t.same(seen, ['to the backend'], 'the other listener saw the bytes too')
  const back = collect(p.user)
  p.backend.write('one')
  p.backend.end('two')
  t.equal((await back).toString(), 'onetwo')
  t.equal(first, 1, 'the first-read hook ran once, on the onread side')
  await p.result
})

t.test('half-close both ways and a reset, with onread sockets', async (t) => {
  const p = await spliced(t)
  const gotUp = collect(p.backend)
  p.user.end('request')
  t.equal((await gotUp).toString(), 'request', 'FIN forwarded after the bytes')
  const gotDown = collect(p.user)
  p.backend.write('reply after the client\'s FIN')
  p.backend.end()
  t.equal((await gotDown).toString(), 'reply after the client\'s FIN')
  t.equal((await p.result).cause, 'eof')

  const q = await spliced(t)
  const err = once(q.user, 'error')
  q.backend.resetAndDestroy()
  const [e] = await err as [NodeJS.ErrnoException]
  t.equal(e.code, 'ECONNRESET', 'the upstream\'s reset reaches the client as a reset')
  t.equal((await q.result).cause, 'reset-upstream')
})

// The behaviour files, again through 'data' events (the fallback), as CI runs on every Node.
const files = [
  'dataplane/splice-integrity.test.js',
  'dataplane/half-close.test.js',
  'dataplane/reset.test.js',
]
for (const f of files) {
  t.test(`KT_JS_SPLICE=stream: ${f}`, { skip: process.env.KT_JS_SPLICE === 'stream' ? 'already the fallback' : false }, async (t) => {
    const file = fileURLToPath(new URL(`../${f}`, import.meta.url))
    const child = spawn(process.execPath, [file], { env: { ...process.env, KT_JS_SPLICE: 'stream', TAP: '1' }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { out += d })
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
    const failed = out.split('\n').filter((l) => /^\s*not ok/.test(l))
    t.equal(code, 0, failed.length > 0 ? failed.join('\n') : `exit ${code}`)
  })
}
