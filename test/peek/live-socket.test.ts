// The peeker behind a real loopback socket: whatever segmentation the kernel
// and the client produce, the route and the bytes come out right.
import t, { type Test } from 'tap'
import net from 'node:net'
import tls from 'node:tls'
import http from 'node:http'
import { once } from 'node:events'
import { FirstFlightPeeker, type PeekOutcome } from '../../src/dataplane/peek/index.js'
import { loadFlights, summary } from '../fixtures/peek-helpers.js'

interface Peeked { outcome: PeekOutcome, bytes: Buffer, reads: number }

/** A server on 127.0.0.1:0 that peeks each connection, then closes it. */
async function peekServer (t: Test): Promise<{ port: number, next: () => Promise<Peeked> }> {
  const results: Peeked[] = []
  const waiters: Array<(p: Peeked) => void> = []
  const sockets = new Set<net.Socket>()
  const server = net.createServer((s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.on('error', () => {})
    const p = new FirstFlightPeeker()
    let reads = 0
    const done = (outcome: PeekOutcome): void => {
      s.removeAllListeners('data')
      const r = { outcome, bytes: p.bytes(), reads }
      const w = waiters.shift()
      if (w !== undefined) w(r)
      else results.push(r)
      s.destroy()
    }
    s.on('data', (d: Buffer) => {
      reads++
      const o = p.push(d)
      if (o.kind !== 'need-more') done(o)
    })
    s.on('end', () => done(p.outcome))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    server.close()
  })
  const port = (server.address() as net.AddressInfo).port
  const next = async (): Promise<Peeked> => {
    const r = results.shift()
    if (r !== undefined) return r
    return await new Promise<Peeked>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no peek result within 10 s')), 10_000)
      waiters.push((p) => { clearTimeout(timer); resolve(p) })
    })
  }
  return { port, next }
}

t.test('node:tls ClientHello over loopback', async (t) => {
  const { port, next } = await peekServer(t)
  const c = tls.connect({ host: '127.0.0.1', port, servername: 'Live.Example.Test', rejectUnauthorized: false })
  c.on('error', () => {})
  t.teardown(() => c.destroy())
  const r = await next()
  t.same(summary(r.outcome), { kind: 'sni', name: 'live.example.test' })
})

t.test('node:http request over loopback', async (t) => {
  const { port, next } = await peekServer(t)
  const req = http.request({ host: '127.0.0.1', port, path: '/x', headers: { Host: 'web.default.localhost:8080' }, agent: false })
  req.on('error', () => {})
  req.end()
  t.teardown(() => req.destroy())
  const r = await next()
  t.same(summary(r.outcome), { kind: 'host', name: 'web.default.localhost' })
  t.match(r.bytes.toString('latin1'), /^GET \/x HTTP\/1\.1\r\n/)
})

t.test('the chromium hello written one byte per write arrives in many reads and still routes', async (t) => {
  const f = loadFlights().find((x) => x.file === 'chromium-https.bin')
  if (f === undefined) return t.fail('missing')
  const { port, next } = await peekServer(t)
  const c = net.connect({ host: '127.0.0.1', port, noDelay: true })
  c.on('error', () => {})
  t.teardown(() => c.destroy())
  await once(c, 'connect')
  // Bounded: one write per byte, a macrotask between batches so that the
  // kernel delivers separate segments.
  for (let i = 0; i < f.bytes.length && !c.destroyed; i++) {
    c.write(f.bytes.subarray(i, i + 1))
    if (i % 16 === 15) await new Promise((resolve) => setTimeout(resolve, 1))
  }
  const r = await next()
  t.same(summary(r.outcome), f.expect)
  t.ok(r.reads > 10, `${r.reads} reads`)
  t.ok(r.bytes.equals(f.bytes), 'the peeked bytes are exactly the bytes sent')
})

t.test('a client that half-closes before a decision leaves need-more and every byte', async (t) => {
  const { port, next } = await peekServer(t)
  const c = net.connect({ host: '127.0.0.1', port })
  c.on('error', () => {})
  t.teardown(() => c.destroy())
  await once(c, 'connect')
  c.end(Buffer.from('GET / HTTP/1.1\r\nHost: half'))
  const r = await next()
  t.same(summary(r.outcome), { kind: 'need-more' })
  t.equal(r.bytes.toString('latin1'), 'GET / HTTP/1.1\r\nHost: half')
})
