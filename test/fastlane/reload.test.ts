// Reloads with lane listeners: a kept listener keeps its socket (never
// rebound) and its open pairs; a new backend list is pushed without disturbing
// them; a route to a PROXY-protocol upstream added on reload hands the socket
// back to JS (same port, no gap); a removed listener stops accepting at once and drains its pairs for the
// drain timeout; ineligible listeners stay on JS (source ranges are carried
// by the lane now: source-ranges.test.ts).
import t from 'tap'
import { dial, readAll, startServer, waitFor } from '../support/net.js'
import type { ListenerSpec } from '../../src/routing/types.js'
import { laneSkip, startLaneProxy } from './lane-proxy.js'

const skip = laneSkip()

t.test('only eligible listeners take the lane', { skip }, async (t) => {
  const a = await startServer((s) => { s.end('A') })
  t.teardown(() => a.close())
  const u = { id: 'u', endpoints: [{ host: '127.0.0.1', port: a.port }] }
  const px = await startLaneProxy([
    { host: '127.0.0.1', port: 0, routes: [], default: u },
    // Source ranges, a route's or the listener's: enforced natively, so the lane.
    { host: '127.0.0.2', port: 0, routes: [{ names: ['x.test'], upstream: u, sourceRanges: ['127.0.0.0/8'] }], default: u },
    { host: '127.0.0.3', port: 0, routes: [], default: u, sourceRanges: ['127.0.0.0/8'] },
    // PROXY protocol (and the rest below): JS.
    { host: '127.0.0.4', port: 0, routes: [], default: { ...u, id: 'pp', proxyProtocol: 'v1' } },
    { host: '127.0.0.5', port: 0, routes: [], default: { ...u, id: 'pool', poolSize: 2 } },
    { host: '127.0.0.6', port: 0, routes: [], default: { ...u, id: 'hash', policy: 'client-ip-hash' } },
    { host: '127.0.0.7', port: 0, routes: [], default: { id: 'named', endpoints: [{ host: 'localhost', port: a.port }] } },
    // Routes whose upstreams balance differently: one policy per lane listener, so JS.
    { host: '127.0.0.8', port: 0, routes: [{ names: ['x.test'], upstream: { ...u, id: 'lc', policy: 'least-connections' } }], default: u },
    // Routes whose upstreams agree on the policy: the lane.
    { host: '127.0.0.9', port: 0, routes: [{ names: ['x.test'], upstream: { ...u, id: 'rr2' } }], default: u },
  ])
  t.teardown(() => px.close())
  const onLane = [1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => px.manager.listeners.get(`127.0.0.${i}:0`)?.lane !== undefined)
  t.same(onLane, [true, true, true, false, false, false, false, false, true])
  for (let i = 0; i < 9; i++) {
    if (i === 3) continue // PROXY header in front of 'A' is not what this checks
    const c = await dial(px.ports[i] as number, px.hosts[i])
    c.end()
    t.equal((await readAll(c)).toString(), 'A', `listener ${i + 1} serves`)
  }
})

t.test('reload: kept lane listener keeps its socket and open pairs; new backends apply to new connections', { skip }, async (t) => {
  const held: Array<import('node:net').Socket> = []
  const a = await startServer((s) => { held.push(s); s.write('A') })
  const b = await startServer((s) => { s.end('B') })
  t.teardown(() => Promise.all([a.close(), b.close()]))
  const L: ListenerSpec = { host: '127.0.0.1', port: 0, routes: [], default: { id: 'u', endpoints: [{ host: '127.0.0.1', port: a.port }] } }
  const px = await startLaneProxy([L], { drainTimeoutMs: 300 })
  t.teardown(() => px.close())
  const port = px.ports[0] as number
  const l = px.manager.listeners.get('127.0.0.1:0')
  const lane = l?.lane
  t.ok(lane, 'on the lane')
  const open = await dial(port)
  const first = await new Promise<string>((resolve) => open.once('data', (d: Buffer) => resolve(d.toString())))
  t.equal(first, 'A')
  const r2 = await px.manager.apply({ version: 2, listeners: [{ ...L, default: { id: 'u', endpoints: [{ host: '127.0.0.1', port: b.port }] } }] })
  t.same(r2.kept, ['127.0.0.1:0'])
  t.equal(px.manager.listeners.get('127.0.0.1:0')?.lane, lane, 'same lane listener (not rebound)')
  const c = await dial(port)
  t.equal((await readAll(c)).toString(), 'B', 'new connections use the new backend')
  // The open pair is undisturbed: bytes still flow both ways.
  open.write('ping')
  await waitFor(() => held[0] !== undefined, 'backend side', 1000)
  const got = new Promise<string>((resolve) => held[0]?.once('data', (d: Buffer) => resolve(d.toString())))
  t.equal(await got, 'ping', 'the open pair still forwards')
  // Add a hostname route to a PROXY-protocol upstream (written by JS only):
  // not eligible any more, the socket goes back to JS on the same port.
  const r3 = await px.manager.apply({ version: 3, listeners: [{ ...L, routes: [{ names: ['x.test'], upstream: { id: 'v', endpoints: [{ host: '127.0.0.1', port: b.port }], proxyProtocol: 'v1' } }], default: { id: 'u', endpoints: [{ host: '127.0.0.1', port: b.port }] } }] })
  t.equal(px.manager.listeners.get('127.0.0.1:0')?.lane?.stopped, true, 'handed back to JS')
  t.same(r3.kept, ['127.0.0.1:0'])
  const c2 = await dial(port)
  c2.end('GET / HTTP/1.1\r\nHost: x.test\r\n\r\n')
  t.equal((await readAll(c2)).toString(), 'B', 'served by JS after the hand-back, same port')
  // Remove it: stops accepting now; the open pair drains, then is reset at the drain timeout.
  // Listen before removing: under load the reset can arrive before the lines
  // below run, and an 'error' with no listener would throw.
  let closedAt = 0
  const openClosed = new Promise<string>((resolve) => {
    open.on('error', (e: NodeJS.ErrnoException) => { closedAt ||= Date.now(); resolve(e.code ?? 'error') })
    open.once('close', () => { closedAt ||= Date.now(); resolve('close') })
  })
  const removedAt = Date.now()
  const r4 = await px.manager.apply({ version: 4, listeners: [] })
  t.same(r4.removed, ['127.0.0.1:0'])
  const refused = await new Promise<string>((resolve) => {
    dial(port).then((s) => { s.on('error', () => {}); s.once('close', () => resolve('closed')) }, (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'))
  })
  t.ok(['ECONNREFUSED', 'ECONNRESET', 'closed'].includes(refused), `not served (${refused})`)
  // "Still open within the drain timeout" is checked by when the reset came,
  // not by sampling after a sleep: under CPU load the sleep and the dial above
  // can outlast the 300 ms drain. The drain timer starts inside apply(), after
  // removedAt, so an early cut (the regression) shows as < 300 ms; 10 ms
  // allows for timer rounding. The upper bound is only a hang guard.
  t.equal(await openClosed, 'ECONNRESET', 'reset at the drain timeout')
  const drained = closedAt - removedAt
  t.ok(drained >= 290 && drained < 10_000, `still open within the drain timeout (reset after ${drained} ms, drain 300 ms)`)
  // (the half-closed pair of `c` is cut by the drain timeout too)
  await waitFor(() => px.registry.counter('kt_connections_total', '').total({ outcome: 'aborted' }) >= 1, 'counted as aborted', 2000)
})
