// Bytes through an in-process relay to a backend on the host side of a
// test-made Docker network (its gateway address: a real, non-loopback
// destination that the relay's allowlist accepts, and that never leaves the host).
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { connect, createServer, type AddressInfo, type Socket } from 'node:net'
import { once } from 'node:events'
import { splice as jsSplice, type SpliceResult as JsSpliceResult } from '../../src/dataplane/splice.js'
import type { RelayHandle } from '../../src/relay/server.js'
import { startTestRelay } from '../support/relay-path.js'
import { RelayDialer } from '../../src/relay/client.js'
import { dockerAvailable, useScratch, createNetwork, listenOnGateway, readAll, type TestNetwork } from '../support/docker.js'
import { waitFor } from '../support/wait.js'

const token = randomBytes(32)
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

const skip = await dockerAvailable()
if (skip !== null) t.plan(0, skip)
else {
  const prefix = await useScratch(t)
  const net: TestNetwork = await createNetwork(prefix)

  async function setup (t: Tap, onConn: (s: Socket) => void, dialerOpts: { proxyV2?: boolean, transport?: 'mux' | 'pool' } = {}): Promise<{ relay: RelayHandle, dialer: RelayDialer, host: string, port: number }> {
    const backend = await listenOnGateway(net, onConn)
    t.teardown(backend.close)
    const relay = await startTestRelay({ host: '127.0.0.1', port: 0, token, allow: [`${net.gateway}/32`], ports: { min: 30000, max: 32767, extra: [backend.port] }, connectTimeoutMs: 1000 })
    t.teardown(() => relay.destroy())
    const dialer = new RelayDialer({ host: '127.0.0.1', port: relay.address.port, token, poolSize: 2, transport: 'pool', ...dialerOpts })
    t.teardown(() => dialer.close())
    return { relay, dialer, host: backend.host, port: backend.port }
  }
  type Tap = { teardown (fn: () => unknown): void }

  t.test('1 MiB each way, byte-exact, with half-close in both directions', async (t) => {
    const up = randomBytes(1 << 20)
    const down = randomBytes(1 << 20)
    let backendGot: Promise<Buffer> | undefined
    const { relay, dialer, host, port } = await setup(t, (s) => {
      backendGot = readAll(s).then((got) => {
        // The client's FIN arrived (readAll resolved on 'end'); the backend still writes, then closes.
        s.end(down)
        return got
      })
    })
    const s = await dialer.dial({ host, port, timeoutMs: 3000 })
    const clientGot = readAll(s)
    s.end(up)
    t.equal(sha(await clientGot), sha(down), 'backend → client bytes intact after the client half-closed')
    t.equal(sha(await (backendGot as Promise<Buffer>)), sha(up), 'client → backend bytes intact')
    await new Promise((r) => setTimeout(r, 50))
    t.equal(relay.counters.bytesToUpstream, up.length)
    t.equal(relay.counters.bytesFromUpstream, down.length)
    t.equal(relay.counters.spliced, 1)
  })

  t.test('the backend half-closes first and the client keeps sending', async (t) => {
    let backendGot: Promise<Buffer> | undefined
    const { dialer, host, port } = await setup(t, (s) => {
      s.end('bye-first')
      backendGot = readAll(s)
    })
    const s = await dialer.dial({ host, port, timeoutMs: 3000 })
    t.equal((await readAll(s)).toString(), 'bye-first')
    s.end('still-talking')
    t.equal((await (backendGot as Promise<Buffer>)).toString(), 'still-talking')
  })

  t.test('a server that speaks first: its bytes arrive after the OK, none lost', async (t) => {
    const { dialer, host, port } = await setup(t, (s) => { s.write('220 banner\r\n'); s.on('data', () => {}); s.on('end', () => s.end()) })
    const s = await dialer.dial({ host, port, timeoutMs: 3000 })
    t.equal(s.isPaused(), true, 'resolved paused, ready for the splice')
    const got = readAll(s)
    s.end()
    t.equal((await got).toString(), '220 banner\r\n')
  })

  t.test('an RST from the backend arrives as an RST', async (t) => {
    const { dialer, host, port } = await setup(t, (s) => { s.once('data', () => s.resetAndDestroy()) })
    const s = await dialer.dial({ host, port, timeoutMs: 3000 })
    s.write('x')
    await t.rejects(readAll(s), { code: 'ECONNRESET' })
  })

  t.test('an RST from the client arrives at the backend as an RST', async (t) => {
    let backendErr: Promise<unknown> | undefined
    const { dialer, host, port } = await setup(t, (s) => {
      backendErr = new Promise((resolve) => { s.on('error', resolve); s.on('end', () => resolve('end')); s.resume() })
    })
    const s = await dialer.dial({ host, port, timeoutMs: 3000 })
    s.write('x')
    await new Promise((r) => setTimeout(r, 50))
    s.resetAndDestroy()
    t.match(await backendErr, { code: 'ECONNRESET' })
  })

  t.test('PROXY v2 written by the relay when asked', async (t) => {
    // The dial does not wait for the relay's connect: the backend's side arrives when it arrives.
    let accepted: (b: Promise<Buffer>) => void = () => {}
    const first = new Promise<Promise<Buffer>>((resolve) => { accepted = resolve })
    const { dialer, host, port } = await setup(t, (s) => { accepted(readAll(s)) }, { proxyV2: true })
    const s = await dialer.dial({ host, port, timeoutMs: 3000, source: { address: '192.0.2.7', port: 4242 } })
    s.end('payload')
    const got = await (await first)
    t.same([...got.subarray(12, 14)], [0x21, 0x11])
    t.same([...got.subarray(16, 20)], [192, 0, 2, 7])
    t.equal(got.readUInt16BE(24), 4242)
    t.equal(got.subarray(28).toString(), 'payload')
    s.destroy()
  })

  t.test('nothing listening: UNREACHABLE comes back at once', async (t) => {
    const { dialer, relay, host } = await setup(t, () => {})
    const closed = await listenOnGateway(net, () => {})
    const deadPort = closed.port
    await closed.close()
    // Allow that port too, so the refusal is the kernel's, not the allowlist's.
    const r2 = await startTestRelay({ host: '127.0.0.1', port: 0, token, allow: [`${host}/32`], ports: { min: deadPort, max: deadPort, extra: [] }, connectTimeoutMs: 1000 })
    t.teardown(() => r2.destroy())
    const d2 = new RelayDialer({ host: '127.0.0.1', port: r2.address.port, token, poolSize: 0, transport: 'pool' })
    const started = Date.now()
    await t.rejects(d2.dial({ host, port: deadPort, timeoutMs: 3000 }, { answer: true }), { code: 'KT_ERR_RELAY_UNREACHABLE' })
    t.ok(Date.now() - started < 1000)
    t.equal(r2.counters.dialFailed, 1)
    // Without a round trip: the socket comes at once, and the refusal is a reset with no byte before it.
    const s = await d2.dial({ host, port: deadPort, timeoutMs: 3000 })
    const seen = await new Promise<{ bytes: number, code: string }>((resolve) => {
      let bytes = 0
      s.on('data', (c: Buffer) => { bytes += c.length })
      s.once('error', (e: NodeJS.ErrnoException) => resolve({ bytes, code: e.code ?? '' }))
      s.once('close', () => resolve({ bytes, code: 'close' }))
      s.write('GET / HTTP/1.0\r\n\r\n')
      s.resume()
    })
    t.same(seen, { bytes: 0, code: 'ECONNRESET' }, 'a reset, no byte of the relay')
    t.equal(r2.counters.dialFailed, 2)
    await d2.close()
    void dialer
    void relay
  })

  t.test('a black-holed destination: TIMEOUT within the relay connect timeout', async (t) => {
    // An unused address in the test network: nothing answers ARP, so the SYN goes nowhere.
    const parts = net.gateway.split('.').map(Number)
    const silent = `${parts[0]}.${parts[1]}.${parts[2]}.${((parts[3] as number) + 200) % 255}`
    const r = await startTestRelay({ host: '127.0.0.1', port: 0, token, allow: [`${silent}/32`], connectTimeoutMs: 400 })
    t.teardown(() => r.destroy())
    const d = new RelayDialer({ host: '127.0.0.1', port: r.address.port, token, poolSize: 0, transport: 'pool' })
    t.teardown(() => d.close())
    const started = Date.now()
    const err = await d.dial({ host: silent, port: 30080, timeoutMs: 3000 }, { answer: true }).then(() => null, (e: unknown) => e)
    const ms = Date.now() - started
    t.match(err, { code: /^(KT_ERR_CONNECT_TIMEOUT|KT_ERR_RELAY_UNREACHABLE)$/ })
    t.ok(ms < 1500, `answered in ${ms} ms (relay connect timeout 400 ms)`)
    t.equal(r.counters.dialed, 1)
  })

  t.test('bytes pipelined right after the BIND are forwarded first', async (t) => {
    let arrived: (b: Promise<Buffer>) => void = () => {}
    const got = new Promise<Promise<Buffer>>((resolve) => { arrived = resolve })
    const { host, port, relay } = await setup(t, (s) => { arrived(readAll(s)) })
    const { connect } = await import('node:net')
    const { encodeAuth, encodeConnect } = await import('../../src/relay/protocol.js')
    const s = connect({ host: '127.0.0.1', port: relay.address.port, allowHalfOpen: true })
    s.on('error', () => {})
    t.teardown(() => s.destroy())
    await new Promise((r) => s.once('connect', r))
    s.end(Buffer.concat([encodeAuth(token), encodeConnect({ address: host, port }), Buffer.from('early-bytes')]))
    s.resume()
    t.equal((await (await got)).toString(), 'early-bytes')
  })

  // Multiplexed streams (CMD_MUX): many streams over the dialer's long-lived carriers.
  async function muxSetup (t: Tap, onConn: (s: Socket) => void, relayOpts: { connectTimeoutMs?: number, allow?: string[] } = {}): Promise<{ relay: RelayHandle, dialer: RelayDialer, host: string, port: number }> {
    const backend = await listenOnGateway(net, onConn)
    t.teardown(backend.close)
    const relay = await startTestRelay({ host: '127.0.0.1', port: 0, token, allow: relayOpts.allow ?? [`${net.gateway}/32`], ports: { min: 30000, max: 32767, extra: [backend.port] }, connectTimeoutMs: relayOpts.connectTimeoutMs ?? 1000 })
    t.teardown(() => relay.destroy())
    const dialer = new RelayDialer({ host: '127.0.0.1', port: relay.address.port, token, poolSize: 0, transport: 'mux' })
    t.teardown(() => dialer.close())
    await waitFor(() => dialer.stats().mux?.carriers === 2, 'two mux carriers', 5000, { seen: () => dialer.stats() })
    return { relay, dialer, host: backend.host, port: backend.port }
  }
  const errOf = (s: Socket): Promise<{ bytes: number, code: string }> => new Promise((resolve) => {
    let bytes = 0
    s.on('data', (c: Buffer) => { bytes += c.length })
    s.once('error', (e: NodeJS.ErrnoException) => resolve({ bytes, code: e.code ?? '' }))
    s.once('close', () => resolve({ bytes, code: 'close' }))
    s.resume()
  })

  t.test('mux: 40 concurrent streams, byte-exact both ways with half-close, over two carriers', async (t) => {
    const { relay, dialer, host, port } = await muxSetup(t, (s) => { s.pipe(s) })
    const acceptedBefore = relay.counters.accepted
    const sizes = Array.from({ length: 40 }, (_, i) => (i * 7919) % 400_000 + 1)
    await Promise.all(sizes.map(async (n) => {
      const s = await dialer.dial({ host, port, timeoutMs: 3000 })
      const data = randomBytes(n)
      const got = readAll(s)
      s.end(data)
      t.equal(sha(await got), sha(data), `${n} bytes echoed`)
    }))
    t.equal(relay.counters.accepted, acceptedBefore, 'no new connection to the relay')
    t.equal(relay.counters.dialed, 40)
    await waitFor(() => relay.counters.active === 2, 'streams gone on the relay, the two carriers left', 5000, { seen: () => relay.counters })
    t.match(dialer.stats(), { transport: 'mux', mux: { state: 'live', carriers: 2, streams: 0, opened: 40 } })
  })

  t.test('mux: a server that speaks first, then half-closes; the client keeps sending', async (t) => {
    let backendGot: Promise<Buffer> | undefined
    const { dialer, host, port } = await muxSetup(t, (s) => { s.end('220 banner\r\n'); backendGot = readAll(s) })
    const s = await dialer.dial({ host, port, timeoutMs: 3000 })
    t.equal((await readAll(s)).toString(), '220 banner\r\n', 'the banner without any client byte')
    s.end('still-talking')
    t.equal((await (backendGot as Promise<Buffer>)).toString(), 'still-talking')
  })

  t.test('mux: RST both ways', async (t) => {
    let backendErr: Promise<unknown> | undefined
    let n = 0
    const { dialer, host, port } = await muxSetup(t, (s) => {
      if (n++ === 0) { s.once('data', () => s.resetAndDestroy()); return }
      backendErr = new Promise((resolve) => { s.on('error', resolve); s.on('end', () => resolve('end')); s.on('data', () => { s.write('ack') }) })
    })
    const a = await dialer.dial({ host, port, timeoutMs: 3000 })
    a.write('x')
    t.same(await errOf(a), { bytes: 0, code: 'ECONNRESET' }, 'the node\'s reset resets the stream')
    const b = await dialer.dial({ host, port, timeoutMs: 3000 })
    b.write('x')
    await new Promise((resolve) => { b.once('data', resolve); b.resume() })
    b.resetAndDestroy()
    t.match(await backendErr, { code: 'ECONNRESET' }, 'the host\'s reset resets the node connection')
  })

  t.test('mux: a slow reader does not stall other streams, and buffering stays within the window', async (t) => {
    const big = 8 << 20
    let n = 0
    const { relay, dialer, host, port } = await muxSetup(t, (s) => {
      if (n++ === 0) { s.end(Buffer.alloc(big, 1)); s.resume(); return }
      s.pipe(s)
    })
    const slow = await dialer.dial({ host, port, timeoutMs: 3000 })
    // Nobody reads `slow` yet. Other streams still flow.
    await waitFor(() => slow.readableLength > 0, 'bytes for the slow reader')
    for (let i = 0; i < 5; i++) {
      const s = await dialer.dial({ host, port, timeoutMs: 3000 })
      const data = randomBytes(300_000)
      const got = readAll(s)
      s.end(data)
      t.equal(sha(await got), sha(data), `stream ${i} echoed while the slow reader waits`)
    }
    t.ok(slow.readableLength <= 256 * 1024, `the slow stream holds ${slow.readableLength} bytes, at most its window`)
    t.ok(relay.counters.bytesFromUpstream < big, 'the relay has not read it all')
    t.equal((await readAll(slow)).length, big, 'and it all arrives once read')
  })

  t.test('mux spliced to a client (the data plane\'s splice): chunks go straight to it; a client that stops reading pauses the stream within its window', async (t) => {
    const big = 8 << 20
    const { dialer, host, port } = await muxSetup(t, (s) => { s.end(Buffer.alloc(big, 7)); s.resume() })
    // The data plane's side of a client connection, and the client itself, which reads nothing at first.
    const front = createServer({ allowHalfOpen: true })
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve))
    t.teardown(() => { front.close() })
    const accepted = once(front, 'connection')
    const client = connect({ host: '127.0.0.1', port: (front.address() as AddressInfo).port, allowHalfOpen: true })
    t.teardown(() => { client.destroy() })
    const [proxySide] = await accepted as [Socket]
    const stream = await dialer.dial({ host, port, timeoutMs: 3000 }) as Socket & { carrier: { directChunks: number } }
    const done = new Promise<JsSpliceResult>((resolve) => { jsSplice(proxySide, stream, { idleTimeoutMs: 30_000 }, resolve) })
    client.end()
    await waitFor(() => stream.isPaused(), 'the stream paused: the client is full', 10_000, { seen: () => ({ buffered: stream.readableLength, direct: stream.carrier.directChunks }) })
    t.ok(stream.carrier.directChunks > 0, `chunks handed straight to the splice: ${stream.carrier.directChunks}`)
    t.ok(stream.readableLength <= 256 * 1024, `held while paused: ${stream.readableLength} bytes, at most its window`)
    const got = await readAll(client)
    t.equal(got.length, big, 'every byte arrives once the client reads')
    t.ok(got.every((b) => b === 7), 'byte-exact')
    t.match(await done, { cause: 'eof', upstreamToClient: big })
  })

  t.test('mux: a denied destination and a dead port are RSTs with their status; no byte reaches the client', async (t) => {
    const { relay, dialer, host } = await muxSetup(t, () => {})
    const denied = await dialer.dial({ host, port: 22, timeoutMs: 3000 })
    denied.write('GET / HTTP/1.0\r\n\r\n')
    t.same(await errOf(denied), { bytes: 0, code: 'KT_ERR_RELAY_DENIED' })
    t.equal(relay.counters.refusedDenied, 1)
    t.equal(relay.counters.dialed, 0, 'nothing dialled')
    const closed = await listenOnGateway(net, () => {})
    const deadPort = closed.port
    await closed.close()
    const r2 = await startTestRelay({ host: '127.0.0.1', port: 0, token, allow: [`${host}/32`], ports: { min: deadPort, max: deadPort, extra: [] }, connectTimeoutMs: 1000 })
    t.teardown(() => r2.destroy())
    const d2 = new RelayDialer({ host: '127.0.0.1', port: r2.address.port, token, poolSize: 0, transport: 'mux' })
    t.teardown(() => d2.close())
    await waitFor(() => d2.stats().mux?.state === 'live', 'a mux carrier')
    const dead = await d2.dial({ host, port: deadPort, timeoutMs: 3000 })
    t.same(await errOf(dead), { bytes: 0, code: 'KT_ERR_RELAY_UNREACHABLE' })
    t.equal(r2.counters.dialFailed, 1)
  })

  t.test('mux: a black-holed destination is a TIMEOUT RST within the relay connect timeout', async (t) => {
    const parts = net.gateway.split('.').map(Number)
    const silent = `${parts[0]}.${parts[1]}.${parts[2]}.${((parts[3] as number) + 200) % 255}`
    const { relay, dialer } = await muxSetup(t, () => {}, { connectTimeoutMs: 400, allow: [`${silent}/32`] })
    const started = Date.now()
    const s = await dialer.dial({ host: silent, port: 30080, timeoutMs: 3000 })
    const seen = await errOf(s)
    t.match(seen, { bytes: 0, code: /^(KT_ERR_CONNECT_TIMEOUT|KT_ERR_RELAY_UNREACHABLE)$/ })
    t.ok(Date.now() - started < 1500, `within ${Date.now() - started} ms`)
    t.equal(relay.counters.dialTimedOut + relay.counters.dialFailed, 1)
  })

  t.test('mux: a carrier lost mid-stream resets its streams; new streams work once it is back', async (t) => {
    let resets = 0
    const { dialer, host, port } = await muxSetup(t, (s) => { s.on('error', () => { resets++ }); s.pipe(s) })
    const streams = await Promise.all([1, 2, 3, 4].map(async () => dialer.dial({ host, port, timeoutMs: 3000 })))
    for (const s of streams) s.write('x')
    await Promise.all(streams.map((s) => new Promise((resolve) => { s.once('data', resolve); s.resume() })))
    const carrier = (streams[0] as unknown as { carrier: { sock: Socket } }).carrier
    const onIt = streams.filter((s) => (s as unknown as { carrier: unknown }).carrier === carrier)
    const others = streams.filter((s) => !onIt.includes(s))
    t.equal(onIt.length, 2, 'two streams on each carrier')
    const results = onIt.map(errOf)
    carrier.sock.destroy()
    t.same(await Promise.all(results), onIt.map(() => ({ bytes: 0, code: 'KT_ERR_RELAY_MUX' })), 'the streams on the lost carrier are reset')
    await waitFor(() => resets === 2, 'their node connections reset')
    for (const s of others) {
      const got = readAll(s)
      s.end('y')
      t.equal((await got).toString(), 'y', 'a stream on the other carrier goes on')
    }
    await waitFor(() => dialer.stats().mux?.carriers === 2, 'the carrier reopened', 5000, { seen: () => dialer.stats() })
    const s = await dialer.dial({ host, port, timeoutMs: 3000 })
    const got = readAll(s)
    s.end('after')
    t.equal((await got).toString(), 'after')
  })
}
