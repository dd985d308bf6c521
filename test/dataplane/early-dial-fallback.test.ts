// The early dial (listener.ts hookEarlyDial) without a relay: a stand-in
// dialer that connects directly, real sockets on loopback. Its socket from
// the synchronous part carries the connection; a part that throws, or has
// nothing at hand, leaves the connection to the ordinary dial (one warning
// for a throw), and no byte is lost; the balancer picks once a connection
// either way; upstreams with warm backend pools, and direct ones, begin
// nothing early; a listener the native lane hands back hooks its new handle.
import t, { type Test } from 'tap'
import { Writable } from 'node:stream'
import { randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'
import type { UpstreamSpec } from '../../src/routing/types.js'
import { pino } from 'pino'
import { ListenerManager } from '../../src/dataplane/listener-manager.js'
import { dialDirect, type Dialer, type DialRequest } from '../../src/dataplane/dialer.js'
import { Registry } from '../../src/observe/metrics.js'
import { loadNativeSplicer } from '../../src/dataplane/native/index.js'
import { laneSkip } from '../fastlane/lane-proxy.js'
import { echoThrough, startEcho, type TestServer } from '../support/net.js'

/** An echo server on loopback, closed with the test (`accepts`: its connections). */
async function echoServer (t: Test): Promise<TestServer> {
  const echo = await startEcho()
  t.teardown(() => echo.close())
  return echo
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

async function plane (t: Test, dialer: Dialer, backend: number | UpstreamSpec): Promise<{ port: number, warnings: string[], manager: ListenerManager }> {
  const warnings: string[] = []
  const sink = new Writable({ write (chunk: Buffer, _enc, cb) { const r = JSON.parse(chunk.toString()) as { level: number, msg: string }; if (r.level >= 40) warnings.push(r.msg); cb() } })
  const manager = new ListenerManager({ logger: pino({ level: 'warn' }, sink), metrics: new Registry(), options: { accessLog: false }, dialers: new Map<string, Dialer>([['relay:stand-in', dialer]]) })
  t.teardown(() => manager.close(200))
  const up = typeof backend === 'number' ? { id: 'echo', endpoints: [{ host: '127.0.0.1', port: backend }], dialer: 'relay:stand-in' } : backend
  const res = await manager.apply({ version: 1, listeners: [{ host: '127.0.0.1', port: 0, routes: [], default: up }] })
  t.equal(res.failed.length, 0)
  return { port: res.bound[0]?.port as number, warnings, manager }
}

t.test('a synchronous part that throws: the ordinary dial serves, one warning, nothing lost', async (t) => {
  const backend = (await echoServer(t)).port
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
  const backend = (await echoServer(t)).port
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

/** A socket connected directly, as a dialer's synchronous part would hand back one already on its way. */
function directNow (req: DialRequest): Socket {
  const s = connect({ host: req.host, port: req.port, allowHalfOpen: true, noDelay: true })
  s.pause()
  return s
}

t.test('a synchronous part that hands back a socket: that socket carries the connection', async (t) => {
  const backend = (await echoServer(t)).port
  const dialer = standIn(directNow)
  const { port } = await plane(t, dialer, backend)
  for (let i = 0; i < 3; i++) {
    const data = randomBytes(300_000 + i)
    t.ok((await echoThrough(port, data)).equals(data), `connection ${i + 1}: every byte back`)
  }
  t.equal(dialer.nowCalls, 3)
  t.equal(dialer.dials, 0, 'no ordinary dial')
})

t.test('round-robin over two backends picks once a connection, whatever the synchronous part does', async (t) => {
  const cases: Array<[string, (req: DialRequest) => Socket | undefined, number | undefined]> = [
    ['hands back a socket', directNow, undefined],
    ['has nothing at hand', () => undefined, undefined],
    ['throws', () => { throw new Error('boom') }, undefined],
    ['not asked: the backends keep warm sockets (poolSize 1)', directNow, 1],
  ]
  for (const [name, now, poolSize] of cases) {
    const a = await echoServer(t)
    const b = await echoServer(t)
    const [pa, pb] = [a.port, b.port]
    const dialer = standIn(now)
    const spec: UpstreamSpec = { id: `rr-${name}`, endpoints: [{ host: '127.0.0.1', port: pa }, { host: '127.0.0.1', port: pb }], dialer: 'relay:stand-in', policy: 'round-robin', ...(poolSize !== undefined ? { poolSize } : {}) }
    const { port, manager } = await plane(t, dialer, spec)
    for (let i = 0; i < 10; i++) {
      const data = randomBytes(1000)
      t.ok((await echoThrough(port, data)).equals(data))
    }
    if (poolSize === undefined) {
      t.equal(a.accepts, 5, `${name}: five to the first backend`)
      t.equal(b.accepts, 5, `${name}: five to the second`)
    } else {
      // The pool's own warm sockets are connections too: each backend served five clients and its warm ones.
      t.ok(a.accepts >= 5 && b.accepts >= 5 && Math.abs(a.accepts - b.accepts) <= 2, `${name}: spread (${a.accepts}, ${b.accepts})`)
      t.equal(dialer.nowCalls, 0, `${name}: nothing begun early`)
      t.equal(manager.upstreamOf(spec.id)?.dialsNow, false)
    }
    await manager.close(200)
  }
})

t.test('a direct upstream begins nothing early', async (t) => {
  const backend = (await echoServer(t)).port
  const manager = new ListenerManager({ logger: pino({ level: 'silent' }), metrics: new Registry(), options: { accessLog: false } })
  t.teardown(() => manager.close(200))
  const res = await manager.apply({ version: 1, listeners: [{ host: '127.0.0.1', port: 0, routes: [], default: { id: 'direct', endpoints: [{ host: '127.0.0.1', port: backend }] } }] })
  t.equal(manager.upstreamOf('direct')?.dialsNow, false)
  const data = randomBytes(5000)
  t.ok((await echoThrough(res.bound[0]?.port as number, data)).equals(data))
})

t.test('a listener the native lane hands back to JS begins its dials early again', { skip: laneSkip() }, async (t) => {
  const backend = (await echoServer(t)).port
  const dialer = standIn(directNow)
  const splicer = loadNativeSplicer()
  if (splicer === undefined) throw new Error('native addon unavailable')
  const manager = new ListenerManager({ logger: pino({ level: 'silent' }), metrics: new Registry(), options: { accessLog: false }, splicer, nativeAccept: 'auto', dialers: new Map<string, Dialer>([['relay:stand-in', dialer]]) })
  t.teardown(async () => { await manager.close(200); splicer.close() })
  const direct = { id: 'echo', endpoints: [{ host: '127.0.0.1', port: backend }] }
  const res = await manager.apply({ version: 1, listeners: [{ host: '127.0.0.1', port: 0, routes: [], default: direct }] })
  const port = res.bound[0]?.port as number
  const l = [...manager.listeners.values()][0]
  t.ok(l?.lane, 'a direct listener starts on the native lane')
  // Dialled through the stand-in now: not eligible for the lane, so the socket
  // goes back to JS, which listens on it again with a new handle.
  await manager.apply({ version: 2, listeners: [{ host: '127.0.0.1', port: 0, routes: [], default: { ...direct, dialer: 'relay:stand-in' } }] })
  const deadline = Date.now() + 5000
  while (dialer.nowCalls === 0 && Date.now() < deadline) {
    const data = randomBytes(2000)
    t.ok((await echoThrough(port, data)).equals(data))
  }
  t.ok(dialer.nowCalls > 0, 'the handed-back listener begins dials early')
  t.equal(dialer.dials, 0, 'and none the ordinary way')
})
