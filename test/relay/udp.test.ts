// UDP flows through the relay (protocol v2, BIND command 2): a real relay
// and the host's UDP plane with the relay dialer, as `up --mode relay` wires
// them, against real UDP servers on the gateway of a test-made Docker network
// (an address of this host that the relay may dial; loopback it refuses).
// The real relay container is covered in test/docker/relay-e2e.
import t from 'tap'
import { connect, createServer, type Socket, type AddressInfo } from 'node:net'
import { createHash, randomBytes } from 'node:crypto'
import type { RelayHandle } from '../../src/relay/server.js'
import { startTestRelay } from '../support/relay-path.js'
import { RelayDialer } from '../../src/relay/client.js'
import { encodeAuth, encodeConnect, AUTH_LEN } from '../../src/relay/protocol.js'
import { encodeFrame, UDP_MAX_PAYLOAD } from '../../src/relay/udp-frame.js'
import { relayUdpFlow, UDP_BACKLOG_MAX } from '../../src/relay/udp-server.js'
import { openUdpFlow, HOST_BACKLOG_MAX } from '../../src/relay/udp-client.js'
import { EventEmitter } from 'node:events'
import { ListenerManager } from '../../src/dataplane/listener-manager.js'
import { Registry } from '../../src/observe/metrics.js'
import { silentLogger } from '../../src/observe/logger.js'
import type { Dialer } from '../../src/dataplane/dialer.js'
import { dockerAvailable, useScratch, createNetwork } from '../support/docker.js'
import { waitFor } from '../support/wait.js'
import { udpServer, udpClient, echo, echoTwice, type UdpServer } from '../udp/support.js'

interface Tap { teardown (fn: () => unknown): void }
const token = randomBytes(32)
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')
// Docker first: tap ends a file once no test is pending and nothing keeps the
// loop busy (a wait for the Docker lock does not), so nothing may be awaited
// between tests.
const skip = await dockerAvailable()
const prefix = skip === null ? await useScratch(t) : ''
const net = skip === null ? await createNetwork(prefix) : undefined

t.test('a relay too old for UDP (no INFO_UDP in its OK): flows end with KT_ERR_UDP_RELAY, nothing is sent', async (t) => {
  // A stand-in for a relay image from before UDP: answers an ACKed AUTH with OK and info 0.
  let binds = 0
  const old = createServer((s) => {
    let got = Buffer.alloc(0)
    s.on('error', () => {})
    s.on('data', (c: Buffer) => {
      got = Buffer.concat([got, c])
      if (got.length >= AUTH_LEN && got.length - c.length < AUTH_LEN && ((got[5] as number) & 1) === 1) s.write(Buffer.from([2, 0, 0]))
      if (got.length > AUTH_LEN) binds++
    })
  })
  await new Promise<void>((resolve) => old.listen({ host: '127.0.0.1', port: 0 }, resolve))
  t.teardown(() => { old.close() })
  const dialer = new RelayDialer({ host: '127.0.0.1', port: (old.address() as AddressInfo).port, token, poolSize: 1 })
  t.teardown(() => dialer.close())
  await waitFor(() => dialer.carriesUdp !== undefined, 'the pool\'s ACKed AUTH', 5000)
  t.equal(dialer.carriesUdp, false)
  await t.rejects(dialer.dialDatagrams({ host: '172.18.0.2', port: 30053, timeoutMs: 1000 }, { message: () => {}, error: () => {} }), { code: 'KT_ERR_UDP_RELAY', message: /older image/ })
  const manager = new ListenerManager({ logger: silentLogger(), metrics: new Registry(), options: { accessLog: false }, dialers: new Map<string, Dialer>([['relay:old', dialer]]) })
  t.teardown(() => manager.close(0))
  const res = await manager.apply({ version: 1, listeners: [{ host: '127.0.0.1', port: 0, protocol: 'udp', routes: [], default: { id: 'c/default/dns:53/udp', endpoints: [{ host: '172.18.0.2', port: 30053 }], dialer: 'relay:old' } }] })
  t.same(res.failed, [], 'the listener binds: the relay is replaced by up, and a flow says why it cannot pass')
  const c = await udpClient()
  t.teardown(() => c.close())
  c.send('x', res.bound[0]?.port as number)
  await waitFor(() => manager.udp.listeners.size === 1 && [...manager.udp.listeners.values()][0]?.flowsStarted === 1, 'the flow to start', 5000)
  await waitFor(() => manager.udp.flowCount === 0, 'the flow to end', 5000)
  t.equal(binds, 0, 'no BIND ever reached the old relay')
})

t.test('bounded: while more than UDP_BACKLOG_MAX bytes wait toward the host, datagrams are dropped and counted, not queued', async (t) => {
  const srv = await udpServer((m) => [m, m, m])
  t.teardown(() => srv.close())
  // The relay connection as the flow sees it: a host that stopped reading (its write buffer is full).
  const sock = new EventEmitter() as EventEmitter & Record<string, unknown>
  let writableLength = 0
  const written: Buffer[] = []
  Object.defineProperty(sock, 'writableLength', { get: () => writableLength })
  Object.assign(sock, { writable: true, write: (b: Buffer) => { written.push(b); return true }, resume: () => {}, end: () => {}, resetAndDestroy: () => {}, destroySoon: () => {} })
  const counters = { udpFlows: 0, udpActive: 0, udpDatagramsUp: 0, udpDatagramsDown: 0, udpDropped: 0, udpFrameErrors: 0 }
  let ready = false
  relayUdpFlow({
    sock: sock as unknown as Socket, destination: { address: '127.0.0.1', port: srv.port }, bindHost: '127.0.0.1', leftover: encodeFrame(Buffer.from('a')), counters,
    ready: () => { ready = true; return true }, ended: () => false, failed: (err) => { throw err }, done: () => {},
  })
  await waitFor(() => written.length === 3, () => `three replies framed (written ${written.length}, ready ${ready})`, 5000)
  t.same(written.map((b) => b.subarray(2).toString()), ['a', 'a', 'a'])
  writableLength = UDP_BACKLOG_MAX + 1
  sock.emit('data', encodeFrame(Buffer.from('b')))
  await waitFor(() => counters.udpDropped === 3, () => `three drops (dropped ${counters.udpDropped})`, 5000)
  t.equal(written.length, 3, 'nothing more was queued toward the host')
  writableLength = 0
  sock.emit('data', encodeFrame(Buffer.from('c')))
  await waitFor(() => written.length === 6, 'the replies once the host reads again', 5000)
  t.equal(counters.udpDatagramsDown, 6)
  t.equal(counters.udpDatagramsUp, 3)
  sock.emit('end')
  t.equal(counters.udpActive, 0)
})

t.test('bounded on the host: while more than HOST_BACKLOG_MAX bytes wait toward the relay, send() drops (the plane counts relay_backlog)', async (t) => {
  const sock = new EventEmitter() as EventEmitter & Record<string, unknown>
  let writableLength = 0
  const written: Buffer[] = []
  Object.defineProperty(sock, 'writableLength', { get: () => writableLength })
  Object.assign(sock, { write: (b: Buffer) => { written.push(b); return true }, resume: () => {}, end: () => {}, destroy: () => {} })
  const got: string[] = []
  const chan = await openUdpFlow({ carriesUdp: true, dial: async () => sock as unknown as Socket }, { host: '172.18.0.2', port: 30053, timeoutMs: 1000 }, { message: (m) => got.push(m.toString()), error: () => {} })
  t.equal(chan.send(Buffer.from('one')), true)
  writableLength = HOST_BACKLOG_MAX + 1
  t.equal(chan.send(Buffer.from('two')), false, 'dropped')
  writableLength = 0
  t.equal(chan.send(Buffer.alloc(UDP_MAX_PAYLOAD + 1)), false, 'too large to frame: dropped')
  t.same(written.map((b) => b.subarray(2).toString()), ['one'])
  // Replies split across chunks come back whole.
  const f = encodeFrame(Buffer.from('reply'))
  sock.emit('data', f.subarray(0, 3))
  sock.emit('data', f.subarray(3))
  t.same(got, ['reply'])
})

if (skip !== null || net === undefined) t.test('through a relay on a Docker network', { skip: skip ?? 'no network' }, () => {})
else {
  const gw = net.gateway

  const setup = async (t: Tap, backends: number[], o: { idleTimeoutMs?: number, dialerToken?: Buffer, ports?: { min: number, max: number } } = {}): Promise<{ relay: RelayHandle, dialer: RelayDialer, port: number, manager: ListenerManager }> => {
    // The relay listens on the gateway too, so its flows' sockets bind that address (never a wildcard).
    const relay = await startTestRelay({ host: gw, port: 0, token, allow: [`${gw}/32`], ports: { ...(o.ports ?? { min: 1024, max: 65535 }), extra: [] } })
    t.teardown(() => relay.destroy())
    const dialer = new RelayDialer({ host: gw, port: relay.address.port, token: o.dialerToken ?? token, name: 'test' })
    t.teardown(() => dialer.close())
    const manager = new ListenerManager({ logger: silentLogger(), metrics: new Registry(), options: { accessLog: false }, dialers: new Map<string, Dialer>([['relay:test', dialer]]), udp: { idleTimeoutMs: o.idleTimeoutMs ?? 60_000 } })
    t.teardown(() => manager.close(0))
    const res = await manager.apply({ version: 1, listeners: [{ host: '127.0.0.1', port: 0, protocol: 'udp', routes: [], default: { id: 'c/default/dns:53/udp', endpoints: backends.map((port) => ({ host: gw, port })), dialer: 'relay:test' } }] })
    if (res.failed.length > 0) throw new Error(JSON.stringify(res.failed))
    return { relay, dialer, port: res.bound[0]?.port as number, manager }
  }
  const server = async (t: Tap, reply = echo): Promise<UdpServer> => {
    const s = await udpServer(reply, gw)
    t.teardown(() => s.close())
    return s
  }

  t.test('40 clients through one relay: each gets exactly its own replies, both of them, in order', async (t) => {
    const srv = await server(t, echoTwice)
    const { relay, port } = await setup(t, [srv.port])
    const clients = await Promise.all(Array.from({ length: 40 }, () => udpClient()))
    t.teardown(() => { for (const c of clients) c.close() })
    clients.forEach((c, i) => { for (let k = 0; k < 3; k++) c.send(`c${i}-${k}`, port) })
    await Promise.all(clients.map((c) => c.waitCount(6, 10_000)))
    clients.forEach((c, i) => {
      const got = c.inbox.map((b) => b.toString())
      t.same(got, [`c${i}-0`, `c${i}-0`, `c${i}-1`, `c${i}-1`, `c${i}-2`, `c${i}-2`], `client ${i}: only its own, in order`)
    })
    t.equal(relay.counters.udpFlows, 40, 'one relay flow per client')
    t.equal(new Set(srv.received.map((r) => r.from.port)).size, 40, 'the server saw 40 sources')
    // (The source address is the relay's own in test/docker/relay-e2e; here Docker's masquerade rule rewrites gateway-to-gateway traffic.)
  })

  t.test('datagram sizes 1 to 65,507 bytes arrive byte-exact both ways (hashed)', async (t) => {
    const srv = await server(t)
    const { port } = await setup(t, [srv.port])
    const c = await udpClient()
    t.teardown(() => c.close())
    const sizes = [1, 2, 1472, 8192, 32_768, 65_506, UDP_MAX_PAYLOAD]
    const sent = sizes.map((n) => randomBytes(n))
    // One at a time: the loopback and the host may drop a burst of 64 KiB datagrams.
    for (let i = 0; i < sent.length; i++) {
      c.send(sent[i] as Buffer, port)
      await c.waitCount(i + 1)
    }
    t.same(c.inbox.map((b) => b.length), sizes)
    t.same(c.inbox.map(sha), sent.map(sha), 'hashes match')
    t.same(srv.received.map((r) => sha(r.msg)), sent.map(sha), 'the server got them exact too')
  })

  t.test('a flow idle for the host\'s idle timeout ends on the host and in the relay', async (t) => {
    const srv = await server(t)
    const { relay, port, manager } = await setup(t, [srv.port], { idleTimeoutMs: 1000 })
    const c = await udpClient()
    t.teardown(() => c.close())
    // The flow's last activity is after this instant, so it cannot expire less than 1000 ms after it.
    const sentAt = Date.now()
    c.send('hi', port)
    await c.waitCount(1)
    await waitFor(() => manager.udp.flowCount === 0, 'the host flow to expire', 10_000)
    const expiredAfter = Date.now() - sentAt
    await waitFor(() => relay.counters.udpActive === 0, () => `the relay flow to close (active ${relay.counters.udpActive})`, 5000)
    t.ok(expiredAfter >= 995, `not before the idle timeout (${expiredAfter} ms after the datagram)`)
    c.send('again', port)
    await c.waitCount(2)
    t.equal(relay.counters.udpFlows, 2, 'the next datagram opens a new flow')
  })

  t.test('refusals: a wrong token, a destination outside the allowlist; nothing reaches the server', async (t) => {
    const srv = await server(t)
    const wrong = await setup(t, [srv.port], { dialerToken: randomBytes(32) })
    const c = await udpClient()
    t.teardown(() => c.close())
    c.send('x', wrong.port)
    await waitFor(() => wrong.relay.counters.refusedAuth >= 1, 'the relay to refuse the AUTH', 5000)
    await waitFor(() => wrong.manager.udp.flowCount === 0, 'the host flow to end (its only backend refused)', 5000)
    t.equal(wrong.manager.udp.upstreamSnapshots()[0]?.backends[0]?.lastFailure, undefined, 'a relay refusal is not held against the node')
    const denied = await setup(t, [srv.port], { ports: { min: 30000, max: 32767 } })
    c.send('y', denied.port)
    await waitFor(() => denied.relay.counters.refusedDenied >= 1, 'the relay to refuse the port', 5000)
    t.equal(denied.relay.counters.dialed, 0)
    t.equal(wrong.relay.counters.udpFlows + denied.relay.counters.udpFlows, 0)
    t.equal(srv.received.length, 0, 'the server saw nothing')
    t.equal(c.inbox.length, 0)
  })

  t.test('raw: unauthenticated UDP BIND, and an oversize frame, are reset and counted', async (t) => {
    const srv = await server(t)
    const { relay } = await setup(t, [srv.port])
    const raw = (bytes: Buffer): Promise<{ reset: boolean, got: number }> => new Promise((resolve, reject) => {
      const s: Socket = connect({ host: gw, port: relay.address.port })
      let got = 0
      let reset = false
      const timer = setTimeout(() => { s.destroy(); reject(new Error('the relay did not close within 5 s')) }, 5000)
      s.on('data', (b: Buffer) => { got += b.length })
      s.on('error', (e: NodeJS.ErrnoException) => { if (e.code === 'ECONNRESET') reset = true })
      s.once('close', () => { clearTimeout(timer); resolve({ reset, got }) })
      s.once('connect', () => s.write(bytes))
    })
    const bind = encodeConnect({ address: gw, port: srv.port }, undefined, false, false, true)
    const unauth = await raw(Buffer.concat([encodeAuth(randomBytes(32)), bind, encodeFrame(Buffer.from('sneak'))]))
    t.ok(unauth.reset, 'a wrong token: reset')
    t.equal(unauth.got, 0, 'no byte of the relay')
    t.equal(relay.counters.refusedAuth, 1)
    const over = await raw(Buffer.concat([encodeAuth(token), bind, encodeFrame(Buffer.from('fine')), Buffer.from([0xff, 0xe4]), Buffer.alloc(100)]))
    t.ok(over.reset, 'an oversize frame: reset')
    t.equal(relay.counters.udpFrameErrors, 1)
    await waitFor(() => srv.received.length >= 1, 'the datagram framed before it', 5000)
    t.same(srv.received.map((r) => r.msg.toString()), ['fine'], 'only the datagram before the bad frame went out; nothing from the unauthenticated one')
  })

  t.test('ICMP port unreachable behind the relay fails the flow over to another backend', async (t) => {
    const gone = await udpServer(echo, gw)
    const deadPort = gone.port
    await gone.close()
    const live = await server(t, (m) => [Buffer.from(`live:${m.toString()}`)])
    const { port, manager } = await setup(t, [deadPort, live.port])
    const c = await udpClient()
    t.teardown(() => c.close())
    // Round-robin starts with the dead backend; the client retries (bounded) as a DNS resolver would.
    for (let i = 0; i < 50 && c.inbox.length === 0; i++) {
      c.send(`q${i}`, port)
      await c.waitCount(1, 200).catch(() => {})
    }
    t.match(c.inbox[0]?.toString(), /^live:q\d+$/, 'the flow moved to the live backend')
    const backends = manager.udp.upstreamSnapshots()[0]?.backends ?? []
    t.ok(backends.find((b) => b.key === `${gw}:${deadPort}`)?.lastFailure !== undefined, 'the unreachable node\'s failure is counted')
    t.equal(backends.find((b) => b.key === `${gw}:${live.port}`)?.lastFailure, undefined)
  })
}
