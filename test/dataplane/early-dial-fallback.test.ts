// The early dial (listener.ts hookEarlyDial) is never in the way of an
// accept: a dialer whose synchronous part throws leaves every connection to
// the ordinary dial, with one warning, and no byte is lost. A direct dialer
// has no synchronous part: nothing is begun early for it. Real sockets on
// loopback; the dialer is a stand-in that connects directly.
import t, { type Test } from 'tap'
import { Writable } from 'node:stream'
import { randomBytes } from 'node:crypto'
import { connect, createServer, type AddressInfo, type Socket } from 'node:net'
import { pino } from 'pino'
import { ListenerManager } from '../../src/dataplane/listener-manager.js'
import { dialDirect, type Dialer, type DialRequest } from '../../src/dataplane/dialer.js'
import { Registry } from '../../src/observe/metrics.js'

async function echoServer (t: { teardown (fn: () => unknown): void }): Promise<number> {
  const open = new Set<Socket>()
  const server = createServer((s) => { open.add(s); s.on('error', () => {}); s.once('close', () => open.delete(s)); s.pipe(s) })
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve))
  t.teardown(() => new Promise<void>((resolve) => { for (const s of open) s.destroy(); server.close(() => { resolve() }) }))
  return (server.address() as AddressInfo).port
}

function echoThrough (port: number, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port })
    const got: Buffer[] = []
    const timer = setTimeout(() => { s.destroy(); reject(new Error('no echo within 5 s')) }, 5000)
    s.on('data', (c: Buffer) => got.push(c))
    s.once('end', () => { clearTimeout(timer); s.end(); resolve(Buffer.concat(got)) })
    s.once('error', (err) => { clearTimeout(timer); reject(err) })
    s.end(data)
  })
}

/** Connects directly; its synchronous part does what `now` says. */
function standIn (now: (req: DialRequest) => Socket | undefined): Dialer & { nowCalls: number, dials: number } {
  const d = {
    nowCalls: 0,
    dials: 0,
    dialNow (req: DialRequest): Socket | undefined { d.nowCalls++; return now(req) },
    dial (req: DialRequest): Promise<Socket> {
      d.dials++
      return new Promise((resolve, reject) => { dialDirect(req.host, req.port, req.timeoutMs, (err, s) => { if (err !== null || s === undefined) reject(err); else resolve(s) }) })
    },
  }
  return d
}

async function plane (t: Test, dialer: Dialer, backend: number): Promise<{ port: number, warnings: string[] }> {
  const warnings: string[] = []
  const sink = new Writable({ write (chunk: Buffer, _enc, cb) { const r = JSON.parse(chunk.toString()) as { level: number, msg: string }; if (r.level >= 40) warnings.push(r.msg); cb() } })
  const manager = new ListenerManager({ logger: pino({ level: 'warn' }, sink), metrics: new Registry(), options: { accessLog: false }, dialers: new Map<string, Dialer>([['relay:stand-in', dialer]]) })
  t.teardown(() => manager.close(200))
  const res = await manager.apply({ version: 1, listeners: [{ host: '127.0.0.1', port: 0, routes: [], default: { id: 'echo', endpoints: [{ host: '127.0.0.1', port: backend }], dialer: 'relay:stand-in' } }] })
  t.equal(res.failed.length, 0)
  return { port: res.bound[0]?.port as number, warnings }
}

t.test('a synchronous part that throws: the ordinary dial serves, one warning, nothing lost', async (t) => {
  const backend = await echoServer(t)
  const dialer = standIn(() => { throw new Error('boom') })
  const { port, warnings } = await plane(t, dialer, backend)
  for (let i = 0; i < 3; i++) {
    const data = randomBytes(100_000 + i)
    t.ok((await echoThrough(port, data)).equals(data), `connection ${i + 1}: every byte back`)
  }
  t.equal(dialer.nowCalls, 3, 'it was tried each time')
  t.equal(dialer.dials, 3, 'and each connection dialled the ordinary way')
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.same(warnings.filter((w) => /early/.test(w)).length, 1, `one warning: ${JSON.stringify(warnings)}`)
})

t.test('a synchronous part that has nothing at hand: dial() goes on with the same request', async (t) => {
  const backend = await echoServer(t)
  const seen: DialRequest[] = []
  const dialer = standIn((req) => { seen.push(req); return undefined })
  const inner = dialer.dial.bind(dialer)
  const given: DialRequest[] = []
  dialer.dial = (req) => { given.push(req); return inner(req) }
  const { port } = await plane(t, dialer, backend)
  const data = randomBytes(10_000)
  t.ok((await echoThrough(port, data)).equals(data))
  t.equal(seen.length, 1)
  t.equal(given[0], seen[0], 'the very request the early part began')
  t.match(given[0], { host: '127.0.0.1', port: backend, source: { address: '127.0.0.1' } })
})
