// Source ranges (loadBalancerSourceRanges) on the native accept lane: the
// listener's own ranges are checked right after accept, a route's once its
// name matched; each case runs on the JS path (lane off) and on the lane and
// must give the same answer to the same client (served, or reset and counted
// source_denied), with Node's BlockList semantics across IPv4, IPv6 and
// IPv4-mapped clients. Clients pick their source with localAddress
// (127.0.0.1, 127.0.0.2, ::1): loopback only. Each lane case proves the lane
// carried it (the JS server does not listen, the lane's accept counter moved).
import t, { type Test } from 'tap'
import { BlockList, connect, type Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { once } from 'node:events'
import { startProxy, startServer, waitFor, type TestProxy } from '../support/net.js'
import { ListenerManager } from '../../src/dataplane/listener-manager.js'
import { Registry } from '../../src/observe/metrics.js'
import { silentLogger } from '../../src/observe/logger.js'
import { listenerKey } from '../../src/routing/types.js'
import { startTlsBackend } from '../support/tls.js'
import type { ListenerSpec, UpstreamSpec } from '../../src/routing/types.js'
import { laneSkip, startLaneProxy, type LaneProxy } from './lane-proxy.js'

const skip = laneSkip()
const DIAL_MS = 5000

/** What a client from `from` gets: the backend's bytes, or 'reset'/'end'/an error code. */
async function ask (port: number, host: string, from: string, send = 'x'): Promise<string> {
  const s: Socket = connect({ port, host, localAddress: from, allowHalfOpen: true })
  s.setTimeout(DIAL_MS, () => { s.destroy(new Error('timeout')) })
  const chunks: Buffer[] = []
  return await new Promise<string>((resolve) => {
    let err: string | undefined
    s.on('data', (c: Buffer) => chunks.push(c))
    s.once('connect', () => { s.end(send) })
    s.once('error', (e: NodeJS.ErrnoException) => { err ??= e.code === 'ECONNRESET' || e.code === 'EPIPE' ? 'reset' : (e.code ?? e.message) })
    s.once('close', () => { resolve(err ?? (chunks.length > 0 ? Buffer.concat(chunks).toString() : 'end')) })
  })
}

/** TLS with SNI `name` from `from`: the backend's answer, or 'reset'. */
async function askTls (port: number, name: string, from: string): Promise<string> {
  return await new Promise<string>((resolve) => {
    const raw = connect({ port, host: '127.0.0.1', localAddress: from })
    raw.on('error', () => {})
    const s = tlsConnect({ socket: raw, servername: name, rejectUnauthorized: false })
    s.once('close', () => { raw.destroy() })
    s.setTimeout(DIAL_MS, () => { s.destroy(new Error('timeout')) })
    const chunks: Buffer[] = []
    let err: string | undefined
    s.once('secureConnect', () => { s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n') })
    s.on('data', (c: Buffer) => chunks.push(c))
    s.once('error', (e: NodeJS.ErrnoException) => { err ??= e.code === 'ECONNRESET' ? 'reset' : (e.code ?? e.message) })
    s.once('close', () => {
      const body = Buffer.concat(chunks).toString()
      const m = /backend=(\S+)/.exec(body)
      resolve(err ?? m?.[1] ?? 'end')
    })
  })
}

/** The JS path (lane off) for one listener on any address family; support/net.ts startProxy keys IPv4 only. */
async function startJsProxy (spec: ListenerSpec): Promise<{ manager: ListenerManager, registry: Registry, port: number, close (): Promise<void> }> {
  const registry = new Registry()
  const manager = new ListenerManager({ logger: silentLogger(), metrics: registry, options: { accessLog: false } })
  const res = await manager.apply({ version: 1, listeners: [spec] })
  const port = res.bound.find((b) => b.key === listenerKey(spec))?.port
  if (port === undefined) { await manager.close(0); throw new Error(JSON.stringify(res.failed)) }
  return { manager, registry, port, close: async () => { await manager.close(200) } }
}

const counter = (px: { registry: LaneProxy['registry'] }, name: string) => px.registry.counter(name, '')

function onLane (t: Test, px: LaneProxy, key: string): void {
  const l = px.manager.listeners.get(key)
  t.ok(l?.lane !== undefined && !l.lane.stopped, `${key} is carried by the native lane`)
  t.equal(l?.server.listening, false, 'the JS server does not listen')
}

function laneAccepted (px: LaneProxy, key: string): number {
  const ll = px.manager.listeners.get(key)?.lane
  ll?.sync()
  return ll?.stats[0] ?? -1
}

function check (ranges: string[], address: string): boolean {
  const b = new BlockList()
  for (const r of ranges) {
    const [a, bits] = r.split('/') as [string, string | undefined]
    const v6 = a.includes(':')
    b.addSubnet(a, bits === undefined ? (v6 ? 128 : 32) : Number(bits), v6 ? 'ipv6' : 'ipv4')
    // listener-manager.ts addCidr: an IPv4 range also admits IPv4-mapped clients.
    if (!v6) b.addSubnet(`::ffff:${a}`, 96 + (bits === undefined ? 32 : Number(bits)), 'ipv6')
  }
  return b.check(address, address.includes(':') ? 'ipv6' : 'ipv4')
}

// Range sets against clients, across families: IPv4 rules, an IPv4 rule with
// host bits set, IPv6 rules covering the IPv4-mapped space (Node lets these
// admit IPv4 clients), an IPv4 catch-all that must not admit ::1, a mixed set.
const SETS: string[][] = [
  ['127.0.0.1/32'],
  ['127.0.0.0/8'],
  ['127.0.0.2/31'],
  ['127.0.0.9/24'],
  ['10.0.0.0/8'],
  ['0.0.0.0/0'],
  ['::1/128'],
  ['::/0'],
  ['::ffff:127.0.0.1/128'],
  ['::ffff:0:0/96'],
  ['::fffe:0:0/95'],
  ['::/96'],
  ['fd00::/8', '127.0.0.2'],
  ['::1'],
]

t.test('listener-wide ranges: the lane answers every client as the JS path and BlockList do', { skip }, async (t) => {
  const a = await startServer((s) => { s.on('error', () => {}); s.end('A') })
  t.teardown(() => a.close())
  const u: UpstreamSpec = { id: 'u', endpoints: [{ host: '127.0.0.1', port: a.port }] }
  // One IPv4 listener per set on its own loopback address.
  const v4: ListenerSpec[] = SETS.map((sourceRanges, i) => ({ host: `127.0.1.${i + 1}`, port: 0, routes: [], default: u, sourceRanges }))
  const lane = await startLaneProxy(v4)
  t.teardown(() => lane.close())
  const js = await startProxy(v4)
  t.teardown(() => js.close())
  for (let i = 0; i < SETS.length; i++) {
    const key = `127.0.1.${i + 1}:0`
    onLane(t, lane, key)
    t.equal(js.manager.listeners.get(key)?.lane, undefined, 'the JS proxy accepts in JS')
    for (const from of ['127.0.0.1', '127.0.0.2']) {
      const want = check(SETS[i] as string[], from) ? 'A' : 'reset'
      const onJs = await ask(js.ports[i] as number, `127.0.1.${i + 1}`, from)
      const onLaneGot = await ask(lane.ports[i] as number, `127.0.1.${i + 1}`, from)
      t.same([onJs, onLaneGot], [want, want], `${JSON.stringify(SETS[i])} from ${from}: ${want}`)
    }
  }
  const denied = (px: TestProxy | LaneProxy): number => { (px.manager.lane?.sync()); return counter(px, 'kt_connections_total').total({ outcome: 'source_denied' }) }
  await waitFor(() => denied(lane) === denied(js), 'lane source_denied count equals the JS path\'s', 2000)
  t.ok(denied(js) > 0, `denials counted source_denied (${denied(js)} on each path)`)
  const accepted = (px: TestProxy | LaneProxy): number => { (px.manager.lane?.sync()); return counter(px, 'kt_connections_accepted_total').total() }
  t.equal(accepted(lane), accepted(js), 'denied clients are not counted as accepted on either path')
  t.equal(accepted(lane) + denied(lane), SETS.length * 2, 'every connection is accepted or denied')
})

t.test('listener-wide ranges over IPv6: ::1 clients on a ::1 listener, lane and JS alike', { skip }, async (t) => {
  const a = await startServer((s) => { s.on('error', () => {}); s.end('A') })
  t.teardown(() => a.close())
  const u: UpstreamSpec = { id: 'u', endpoints: [{ host: '127.0.0.1', port: a.port }] }
  for (const sourceRanges of SETS) {
    const spec: ListenerSpec = { host: '::1', port: 0, routes: [], default: u, sourceRanges }
    const lane = await startLaneProxy([spec])
    const js = await startJsProxy(spec).catch(async (e: unknown) => { await lane.close(); throw e })
    try {
      onLane(t, lane, '[::1]:0')
      const want = check(sourceRanges, '::1') ? 'A' : 'reset'
      const got = [await ask(js.port, '::1', '::1'), await ask(lane.ports[0] as number, '::1', '::1')]
      t.same(got, [want, want], `${JSON.stringify(sourceRanges)} from ::1: ${want}`)
      t.equal(laneAccepted(lane, '[::1]:0'), want === 'A' ? 1 : 0, 'the lane accepted it (or denied it before accepting)')
    } finally {
      await lane.close()
      await js.close()
    }
  }
})

t.test('IPv4-mapped clients (a listener on ::ffff:127.0.0.1) are judged as BlockList judges them', { skip }, async (t) => {
  const a = await startServer((s) => { s.on('error', () => {}); s.end('A') })
  t.teardown(() => a.close())
  const u: UpstreamSpec = { id: 'u', endpoints: [{ host: '127.0.0.1', port: a.port }] }
  for (const sourceRanges of SETS) {
    const spec: ListenerSpec = { host: '::ffff:127.0.0.1', port: 0, routes: [], default: u, sourceRanges }
    const lane = await startLaneProxy([spec])
    const js = await startJsProxy(spec).catch(async (e: unknown) => { await lane.close(); throw e })
    try {
      onLane(t, lane, '[::ffff:127.0.0.1]:0')
      for (const from of ['127.0.0.1', '127.0.0.2']) {
        // The accepted peer is ::ffff:127.0.0.x (an AF_INET6 socket).
        const want = check(sourceRanges, `::ffff:${from}`) ? 'A' : 'reset'
        const got = [await ask(js.port, '127.0.0.1', from), await ask(lane.ports[0] as number, '127.0.0.1', from)]
        t.same(got, [want, want], `${JSON.stringify(sourceRanges)} from ::ffff:${from}: ${want}`)
      }
    } finally {
      await lane.close()
      await js.close()
    }
  }
})

t.test('per-route ranges with Host routes: the same name served for one source, reset for another; a route without ranges unaffected', { skip }, async (t) => {
  const a = await startServer((s) => { s.on('error', () => {}); s.end('A') })
  const b = await startServer((s) => { s.on('error', () => {}); s.end('B') })
  const d = await startServer((s) => { s.on('error', () => {}); s.end('D') })
  t.teardown(() => Promise.all([a.close(), b.close(), d.close()]))
  const up = (id: string, port: number): UpstreamSpec => ({ id, endpoints: [{ host: '127.0.0.1', port }] })
  const spec: ListenerSpec[] = [{
    host: '127.0.0.1',
    port: 0,
    routes: [
      { names: ['a.test', '*.wild.test'], upstream: up('a', a.port), sourceRanges: ['127.0.0.1/32'] },
      { names: ['b.test'], upstream: up('b', b.port) },
      // A second route to the same upstream with other ranges: ranges belong to the route, not the upstream.
      { names: ['a2.test'], upstream: up('a', a.port), sourceRanges: ['127.0.0.2/32'] },
    ],
    default: up('d', d.port),
  }]
  const lane = await startLaneProxy(spec, { accessLog: true })
  t.teardown(() => lane.close())
  const js = await startProxy(spec)
  t.teardown(() => js.close())
  onLane(t, lane, '127.0.0.1:0')
  const get = (host: string): string => `GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`
  const cases: Array<[string, string, string]> = [
    ['a.test', '127.0.0.1', 'A'],
    ['a.test', '127.0.0.2', 'reset'],
    ['x.wild.test', '127.0.0.1', 'A'],
    ['x.wild.test', '127.0.0.2', 'reset'],
    ['a2.test', '127.0.0.1', 'reset'],
    ['a2.test', '127.0.0.2', 'A'],
    ['b.test', '127.0.0.1', 'B'],
    ['b.test', '127.0.0.2', 'B'],
    ['other.test', '127.0.0.2', 'D'],
  ]
  for (const [name, from, want] of cases) {
    const got = [await ask(js.ports[0] as number, '127.0.0.1', from, get(name)), await ask(lane.ports[0] as number, '127.0.0.1', from, get(name))]
    t.same(got, [want, want], `Host ${name} from ${from}: ${want}`)
  }
  t.equal(laneAccepted(lane, '127.0.0.1:0'), cases.length, 'the lane accepted every connection (route ranges are checked after the match)')
  t.equal(lane.manager.listeners.get('127.0.0.1:0')?.active.size, 0, 'JS holds no connection')
  // Same counters on both paths: outcomes and route decisions (a denial counts no route decision).
  lane.manager.lane?.sync()
  for (const o of ['source_denied', 'eof']) {
    await waitFor(() => { lane.manager.lane?.sync(); return counter(lane, 'kt_connections_total').total({ outcome: o }) === counter(js, 'kt_connections_total').total({ outcome: o }) }, `${o} equal`, 2000)
  }
  t.equal(counter(lane, 'kt_connections_total').total({ outcome: 'source_denied' }), 3, 'three denials, source_denied')
  for (const o of ['host', 'default', 'sni']) {
    t.equal(counter(lane, 'kt_route_decisions_total').total({ outcome: o }), counter(js, 'kt_route_decisions_total').total({ outcome: o }), `route decisions ${o} equal`)
  }
  t.equal(counter(lane, 'kt_route_decisions_total').total({ outcome: 'host' }), 5, 'only the served Host matches count as host decisions')
  // The lane's access-log line for a denial carries what the JS path's does.
  await waitFor(() => lane.logs.filter((l) => l['cause'] === 'source_denied').length === 3, 'denial access-log lines', 2000)
  const line = lane.logs.find((l) => l['cause'] === 'source_denied' && l['name'] === 'a.test')
  t.match(line, { route: 'host', name: 'a.test', client: '127.0.0.2', cause: 'source_denied', error: 'KT_ERR_SOURCE_DENIED', attempts: 0, bytesIn: 0, bytesOut: 0 })
  t.equal(line?.['upstream'], undefined, 'no upstream: denied before any connect')
})

t.test('per-route ranges with SNI routes: TLS clients by name and source', { skip }, async (t) => {
  const a = await startTlsBackend('a.example.test')
  const b = await startTlsBackend('b.example.test')
  t.teardown(() => Promise.all([a.close(), b.close()]))
  const up = (id: string, port: number): UpstreamSpec => ({ id, endpoints: [{ host: '127.0.0.1', port }] })
  const spec: ListenerSpec[] = [{
    host: '127.0.0.1',
    port: 0,
    routes: [
      { names: ['a.example.test'], upstream: up('a', a.port), sourceRanges: ['127.0.0.2/32', '::1/128'] },
      { names: ['b.example.test'], upstream: up('b', b.port) },
    ],
  }]
  const lane = await startLaneProxy(spec)
  t.teardown(() => lane.close())
  const js = await startProxy(spec)
  t.teardown(() => js.close())
  onLane(t, lane, '127.0.0.1:0')
  const cases: Array<[string, string, string]> = [
    ['a.example.test', '127.0.0.2', 'a.example.test'],
    ['a.example.test', '127.0.0.1', 'reset'],
    ['b.example.test', '127.0.0.1', 'b.example.test'],
    ['b.example.test', '127.0.0.2', 'b.example.test'],
  ]
  for (const [name, from, want] of cases) {
    const got = [await askTls(js.ports[0] as number, name, from), await askTls(lane.ports[0] as number, name, from)]
    t.same(got, [want, want], `SNI ${name} from ${from}: ${want}`)
  }
  t.equal(laneAccepted(lane, '127.0.0.1:0'), cases.length, 'the lane accepted every connection')
  await waitFor(() => { lane.manager.lane?.sync(); return counter(lane, 'kt_connections_total').total({ outcome: 'source_denied' }) === 1 }, 'one source_denied on the lane', 2000)
  t.equal(counter(js, 'kt_connections_total').total({ outcome: 'source_denied' }), 1, 'and on the JS path')
  t.equal(counter(lane, 'kt_route_decisions_total').total({ outcome: 'sni' }), counter(js, 'kt_route_decisions_total').total({ outcome: 'sni' }), 'same SNI decisions (3)')
})

t.test('reload: changed ranges apply to new connections on the kept lane listener, never rebound', { skip }, async (t) => {
  const held: Socket[] = []
  const a = await startServer((s) => { s.on('error', () => {}); held.push(s); s.write('A') })
  t.teardown(() => { for (const s of held) s.destroy(); return a.close() })
  const u: UpstreamSpec = { id: 'u', endpoints: [{ host: '127.0.0.1', port: a.port }] }
  const L: ListenerSpec = { host: '127.0.0.1', port: 0, routes: [], default: u, sourceRanges: ['127.0.0.1/32'] }
  const px = await startLaneProxy([L])
  t.teardown(() => px.close())
  const port = px.ports[0] as number
  const lane = px.manager.listeners.get('127.0.0.1:0')?.lane
  onLane(t, px, '127.0.0.1:0')
  const first = (from: string): Promise<string> => new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1', localAddress: from })
    s.setTimeout(DIAL_MS, () => { s.destroy() })
    s.once('data', (c: Buffer) => { s.destroy(); resolve(c.toString()) })
    s.once('error', (e: NodeJS.ErrnoException) => { resolve(e.code === 'ECONNRESET' ? 'reset' : (e.code ?? 'error')) })
    s.once('close', () => { resolve('close') })
  })
  // An open pair from .1 survives the reload that denies .1 (connections keep the config they were accepted with).
  const open = connect({ port, host: '127.0.0.1', localAddress: '127.0.0.1' })
  t.teardown(() => open.destroy())
  open.on('error', () => {})
  const [hello] = await once(open, 'data') as [Buffer]
  t.equal(hello.toString(), 'A')
  t.same([await first('127.0.0.1'), await first('127.0.0.2')], ['A', 'reset'], 'v1: .1 served, .2 denied')
  const r2 = await px.manager.apply({ version: 2, listeners: [{ ...L, sourceRanges: ['127.0.0.2/32'] }] })
  t.same(r2.kept, ['127.0.0.1:0'])
  t.equal(px.manager.listeners.get('127.0.0.1:0')?.lane, lane, 'same lane listener (not rebound)')
  t.same([await first('127.0.0.1'), await first('127.0.0.2')], ['reset', 'A'], 'v2: .1 denied, .2 served')
  const { sourceRanges: _ranges, ...noRanges } = L
  const r3 = await px.manager.apply({ version: 3, listeners: [noRanges] })
  t.same(r3.kept, ['127.0.0.1:0'])
  t.same([await first('127.0.0.1'), await first('127.0.0.2')], ['A', 'A'], 'v3 (no ranges): everyone served')
  t.equal(px.manager.listeners.get('127.0.0.1:0')?.lane, lane, 'still the same lane listener')
  open.write('ping')
  await waitFor(() => held[0] !== undefined, 'backend side of the open pair', 1000)
  const got = await new Promise<string>((resolve) => held[0]?.once('data', (d: Buffer) => resolve(d.toString())))
  t.equal(got, 'ping', 'the pair opened under v1 still forwards')
  t.equal(laneAccepted(px, '127.0.0.1:0'), 5, 'the lane accepted the 5 allowed connections')
  px.manager.lane?.sync()
  t.equal(counter(px, 'kt_connections_total').total({ outcome: 'source_denied' }), 2, 'the 2 denied ones counted source_denied')
})
