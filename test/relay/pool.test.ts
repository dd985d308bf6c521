// The host-side pool: warm authenticated connections, used once, dead ones
// dropped and replaced, bounded failures when the relay goes away.
import t, { type Test } from 'tap'
import { waitFor } from '../support/wait.js'
import { randomBytes } from 'node:crypto'
import { startTestRelay } from '../support/relay-path.js'
import { RelayDialer, relayHandshake } from '../../src/relay/client.js'
import { Registry } from '../../src/observe/metrics.js'
import type { Dialer } from '../../src/dataplane/dialer.js'
import { dockerAvailable, useScratch, createNetwork, listenOnGateway, readAll } from '../support/docker.js'
import { startSlowForwarder } from '../support/slow-forwarder.js'
import { POOL_MIN } from '../../src/relay/client.js'
import { AUTO_MUX_RATE, AUTO_MUX_RATE_MUX_LANE, AUTO_BULK_BYTES } from '../../src/relay/mux-client.js'
import { splice } from '../../src/dataplane/splice.js'
import { createServer, connect as netConnect, type Socket as NetSocket, type AddressInfo } from 'node:net'
import { once } from 'node:events'

/** The data plane's way: a client connection spliced to the dialed relay socket. Resolves with the client's end. */
async function spliceToClient (t: Test, relaySock: NetSocket): Promise<NetSocket> {
  const srv = createServer({ allowHalfOpen: true, pauseOnConnect: true })
  srv.listen(0, '127.0.0.1')
  await once(srv, 'listening')
  const accepted = once(srv, 'connection')
  const user = netConnect({ port: (srv.address() as AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true })
  const [near] = await accepted as [NetSocket]
  t.teardown(() => { user.destroy(); near.destroy(); srv.close() })
  splice(near, relaySock, { idleTimeoutMs: 10_000 }, () => {})
  return user
}

const token = randomBytes(32)

const skip = await dockerAvailable()
if (skip !== null) t.plan(0, skip)
else {
  const prefix = await useScratch(t)
  const net = await createNetwork(prefix)
  const echo = await listenOnGateway(net, (s) => { s.pipe(s) })
  t.teardown(echo.close)

  t.test('warm connections are authenticated and each is used once', async (t) => {
    const relay = await startTestRelay({ host: '127.0.0.1', port: 0, token, allow: [`${echo.host}/32`], ports: { min: echo.port, max: echo.port, extra: [] } })
    t.teardown(() => relay.destroy())
    const metrics = new Registry()
    const d = new RelayDialer({ host: '127.0.0.1', port: relay.address.port, token, poolSize: 3, metrics, name: 'test', transport: 'pool' })
    t.teardown(() => d.close())
    // Compile-time: a RelayDialer is the data plane's Dialer.
    const asDialer: Dialer = d
    t.ok(asDialer)
    t.ok(await d.warm(3000))
    // One refill waits for the relay's OK; the others park once their AUTH is written, so the relay's count may trail by a moment.
    await waitFor(() => relay.counters.authenticated === 3, () => `three AUTHs done ahead of time (${relay.counters.authenticated})`, 3000)
    t.equal(d.stats().dataPath, 'js', 'the ACKed one brought the relay\'s data path')
    const socks = []
    for (let i = 0; i < 3; i++) {
      const s = await d.dial({ host: echo.host, port: echo.port, timeoutMs: 2000 })
      socks.push(s)
      s.end(`msg${i}`)
      t.equal((await readAll(s)).toString(), `msg${i}`)
    }
    t.equal(d.stats().hits, 3)
    t.equal(d.stats().misses, 0)
    await waitFor(() => d.stats().idle === 3, 'refilled in the background', 3000)
    t.equal(relay.counters.spliced, 3)
    t.match(metrics.render(), /kt_relay_pool_total\{result="hit"\} 3/)
  })

  t.test('connections the relay closes while parked are dropped and replaced', async (t) => {
    const relay = await startTestRelay({ host: '127.0.0.1', port: 0, token, allow: [`${echo.host}/32`], ports: { min: echo.port, max: echo.port, extra: [] }, idleTimeoutMs: 200 })
    t.teardown(() => relay.destroy())
    const d = new RelayDialer({ host: '127.0.0.1', port: relay.address.port, token, poolSize: 2, transport: 'pool' })
    t.teardown(() => d.close())
    t.ok(await d.warm(3000))
    await waitFor(() => d.stats().discarded >= 2, 'the relay\'s idle close was noticed', 3000)
    await waitFor(() => d.stats().idle === 2, 'and the pool refilled', 3000)
    // The relay keeps closing parked connections 200 ms after they park, so a
    // taken one may be closed by the relay as it is used (a race this test
    // makes on purpose; the defaults replace a connection before the relay's
    // idle close). A later dial must get through on a fresh one.
    const got: string[] = []
    for (let i = 0; i < 5 && !got.includes('after-churn'); i++) {
      const s = await d.dial({ host: echo.host, port: echo.port, timeoutMs: 2000 })
      // The race lost: the relay closed it under the write (EPIPE or a reset); the next dial tries again.
      s.end('after-churn')
      got.push(await readAll(s).then((b) => b.toString(), (err: NodeJS.ErrnoException) => `error ${err.code ?? err.message}`))
    }
    t.ok(got.includes('after-churn'), `a dial after the churn is echoed (got ${JSON.stringify(got)})`)
  })

  t.test('connections older than maxIdleMs are replaced before the relay would drop them', async (t) => {
    const relay = await startTestRelay({ host: '127.0.0.1', port: 0, token, allow: [`${echo.host}/32`] })
    t.teardown(() => relay.destroy())
    const d = new RelayDialer({ host: '127.0.0.1', port: relay.address.port, token, poolSize: 1, maxIdleMs: 150, transport: 'pool' })
    t.teardown(() => d.close())
    t.ok(await d.warm(3000))
    await waitFor(() => relay.counters.authenticated >= 3, 'aged out and replaced repeatedly', 3000)
    t.equal(d.stats().idle, 1)
  })

  t.test('a pool hit\'s replacement waits for the first byte back, so it never runs ahead of the client', async (t) => {
    // A destination that answers only when told: the test sees the client's bytes arrive first.
    let arrived: ((s: import('node:net').Socket) => void) | undefined
    const got = new Promise<import('node:net').Socket>((resolve) => { arrived = resolve })
    const dst = await listenOnGateway(net, (s) => { s.once('data', () => arrived?.(s)) })
    t.teardown(dst.close)
    const relay = await startTestRelay({ host: '127.0.0.1', port: 0, token, allow: [`${dst.host}/32`], ports: { min: dst.port, max: dst.port, extra: [] } })
    t.teardown(() => relay.destroy())
    const d = new RelayDialer({ host: '127.0.0.1', port: relay.address.port, token, poolSize: 2, refillDeferMs: 60_000 })
    t.teardown(() => d.close())
    t.ok(await d.warm(3000))
    const s = await d.dial({ host: dst.host, port: dst.port, timeoutMs: 2000 })
    t.equal(d.stats().connecting, 0, 'no refill started with the dial')
    const user = await spliceToClient(t, s)
    user.write('hello')
    const far = await got
    t.equal(d.stats().connecting + d.stats().idle, 1, 'none while the client\'s bytes crossed the relay')
    const accepted = relay.counters.accepted
    far.end('answer')
    t.equal((await readAll(user)).toString(), 'answer')
    await waitFor(() => d.stats().idle === 2, () => `refilled after the first byte back (${JSON.stringify(d.stats())})`, 3000)
    // The host parks a connection once it is connected; the relay (on the
    // addon's lane, a worker thread) may accept it a moment later.
    await waitFor(() => relay.counters.accepted >= accepted + 1, 'the relay accepted the refill', 3000)
    t.equal(relay.counters.accepted, accepted + 1, 'one refill, no more')
    // Without a byte back (a silent server, or a native splice that took the socket), the deadline refills.
    const d2 = new RelayDialer({ host: '127.0.0.1', port: relay.address.port, token, poolSize: 2, refillDeferMs: 50 })
    t.teardown(() => d2.close())
    t.ok(await d2.warm(3000))
    const s2 = await d2.dial({ host: dst.host, port: dst.port, timeoutMs: 2000 })
    s2.on('error', () => {})
    t.equal(d2.stats().connecting, 0)
    await waitFor(() => d2.stats().idle === 2, () => `refilled at the deadline (${JSON.stringify(d2.stats())})`, 3000)
    s2.destroy()
    // A hit that empties the pool refills at once: the next client would wait otherwise.
    const d3 = new RelayDialer({ host: '127.0.0.1', port: relay.address.port, token, poolSize: 1, refillDeferMs: 60_000 })
    t.teardown(() => d3.close())
    t.ok(await d3.warm(3000))
    const s3 = await d3.dial({ host: dst.host, port: dst.port, timeoutMs: 2000 })
    s3.on('error', () => {})
    t.equal(d3.stats().connecting, 1, 'the empty pool refills with the dial')
    s3.destroy()
    // Down to half its target, the pool refills at once too (a burst would find it empty).
    const d4 = new RelayDialer({ host: '127.0.0.1', port: relay.address.port, token, poolSize: 4, refillDeferMs: 60_000 })
    t.teardown(() => d4.close())
    t.ok(await d4.warm(3000))
    const burst = []
    for (let i = 0; i < 2; i++) burst.push(await d4.dial({ host: dst.host, port: dst.port, timeoutMs: 2000 }))
    t.equal(d4.stats().connecting, 0, 'two of four taken: still deferred')
    burst.push(await d4.dial({ host: dst.host, port: dst.port, timeoutMs: 2000 }))
    t.equal(d4.stats().connecting, 3, 'three of four taken: refilled to the target at once')
    for (const b of burst) { b.on('error', () => {}); b.destroy() }
  })

  t.test('the relay goes away: the pool empties and dials fail fast with KT_ERR_RELAY_DOWN', async (t) => {
    const relay = await startTestRelay({ host: '127.0.0.1', port: 0, token, allow: [`${echo.host}/32`], ports: { min: echo.port, max: echo.port, extra: [] } })
    const d = new RelayDialer({ host: '127.0.0.1', port: relay.address.port, token, poolSize: 3, transport: 'pool' })
    t.teardown(() => d.close())
    t.ok(await d.warm(3000))
    relay.destroy()
    await waitFor(() => d.stats().idle === 0, 'dead connections dropped', 3000)
    const started = Date.now()
    await t.rejects(d.dial({ host: echo.host, port: echo.port, timeoutMs: 3000 }), { code: 'KT_ERR_RELAY_DOWN' })
    t.ok(Date.now() - started < 1000, 'no hang')
    t.ok(d.stats().handshakeFailures >= 1)
    t.match(d.stats().lastError, /KT_ERR_RELAY_DOWN/)
  })

  t.test('a port forwarder that accepts but has no relay behind it never enters the pool', async (t) => {
    // What docker-proxy does when the container is not listening: accept, then close.
    const { createServer } = await import('node:net')
    const fwd = createServer((s) => { s.on('error', () => {}); s.end() })
    await new Promise<void>((resolve) => fwd.listen(0, '127.0.0.1', resolve))
    t.teardown(() => fwd.close())
    const port = (fwd.address() as { port: number }).port
    await t.rejects(relayHandshake({ host: '127.0.0.1', port, token }, 1000), { code: 'KT_ERR_RELAY_DOWN' })
    const d = new RelayDialer({ host: '127.0.0.1', port, token, poolSize: 2, transport: 'pool' })
    t.teardown(() => d.close())
    t.equal(await d.warm(300), false)
    t.equal(d.stats().idle, 0)
  })

  t.test('a relay that never answers: the dial times out within its deadline', async (t) => {
    const { createServer } = await import('node:net')
    const held: import('node:net').Socket[] = []
    const mute = createServer((s) => { held.push(s); s.on('error', () => {}) })
    await new Promise<void>((resolve) => mute.listen(0, '127.0.0.1', resolve))
    t.teardown(() => { for (const s of held) s.destroy(); mute.close() })
    const port = (mute.address() as { port: number }).port
    const d = new RelayDialer({ host: '127.0.0.1', port, token, poolSize: 0, transport: 'pool' })
    const started = Date.now()
    await t.rejects(d.dial({ host: echo.host, port: 30080, timeoutMs: 300 }, { answer: true }), { code: 'KT_ERR_CONNECT_TIMEOUT' })
    const ms = Date.now() - started
    t.ok(ms >= 250 && ms < 1000, `${ms} ms`)
  })

  t.test('auto: the pool grows with the rate of new dials behind a slow forwarder, and shrinks back when quiet', async (t) => {
    const relay = await startTestRelay({ host: '127.0.0.1', port: 0, token, allow: [`${echo.host}/32`], ports: { min: echo.port, max: echo.port, extra: [] } })
    t.teardown(() => relay.destroy())
    // 20 ms per onward connect: a refill takes that long, so at a few hundred dials a second the pool must hold several.
    const fwd = await startSlowForwarder({ host: '127.0.0.1', port: relay.address.port }, 20)
    t.teardown(() => fwd.close())
    const d = new RelayDialer({ host: '127.0.0.1', port: fwd.endpoint.port, token, name: 'auto', transport: 'pool' })
    t.teardown(() => d.close())
    t.ok(await d.warm(3000), 'warm at the floor')
    t.equal(d.stats().target, POOL_MIN, `quiet: ${POOL_MIN}`)
    let maxTarget = 0
    for (let i = 0; i < 120; i++) {
      const s = await d.dial({ host: echo.host, port: echo.port, timeoutMs: 3000 })
      // Closed by the teardown (a reset) at the latest: the dial's caller owns its errors.
      s.on('error', () => {})
      s.end('x')
      s.resume()
      maxTarget = Math.max(maxTarget, d.stats().target)
      if (i % 10 === 9) await new Promise((resolve) => setTimeout(resolve, 5))
    }
    t.ok(maxTarget > POOL_MIN, `busy: the target rose above the floor, to ${maxTarget} (rate ${d.stats().rate}/s)`)
    t.ok(d.stats().hits > 0, `hits ${d.stats().hits}, misses ${d.stats().misses}`)
    t.ok(d.stats().hitRate > 0 && d.stats().hitRate <= 1)
    // Quiet again: the rate decays (about 1 s time constant) and the surplus is closed once a second.
    const deadline = Date.now() + 10_000
    while ((d.stats().idle > POOL_MIN || d.stats().target > POOL_MIN) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100))
    t.equal(d.stats().target, POOL_MIN, 'the target fell back to the floor')
    t.equal(d.stats().idle, POOL_MIN, 'and so did the pool')
  })

  t.test('--relay-transport auto: per destination, the pool while new connections come slowly, mux streams once they come fast, the pool again when they slow', async (t) => {
    const other = await listenOnGateway(net, (s) => { s.pipe(s) })
    t.teardown(other.close)
    const relay = await startTestRelay({ host: '127.0.0.1', port: 0, token, allow: [`${echo.host}/32`], ports: { min: Math.min(echo.port, other.port), max: Math.max(echo.port, other.port), extra: [] } })
    t.teardown(() => relay.destroy())
    const d = new RelayDialer({ host: '127.0.0.1', port: relay.address.port, token, name: 'auto' })
    t.teardown(() => d.close())
    t.ok(await d.warm(3000))
    const isStream = (s: NetSocket): boolean => (s as unknown as { ktMux?: boolean }).ktMux === true
    const echoed = async (s: NetSocket, msg: string): Promise<string> => {
      s.on('error', () => {})
      if (isStream(s)) s.resume()
      s.end(msg)
      return (await readAll(s)).toString()
    }
    for (let i = 0; i < 3; i++) {
      const s = await d.dial({ host: echo.host, port: echo.port, timeoutMs: 2000 })
      t.notOk(isStream(s), 'a slow dial is a pooled connection')
      t.equal(await echoed(s, `slow${i}`), `slow${i}`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    t.match(d.stats(), { auto: true, transport: 'pool', hits: 3, destinationsOnMux: 0 })
    // A relay whose addon serves the carriers (INFO_MUX_LANE) gets them at once (client.ts eagerMux), unused while dials come slowly.
    const eager = relay.acceptPath === 'native' ? 2 : 0
    if (eager === 0) t.equal(d.stats().mux, undefined, 'no multiplexed connection while new connections come slowly')
    else await waitFor(() => d.stats().mux?.carriers === 2, 'the carriers opened at once', 3000)
    // The relay's addon may take the last refill's AUTH a moment after the host parked it.
    await waitFor(() => relay.counters.authenticated >= 3 + POOL_MIN + eager, 'the refills authenticated', 3000)
    t.equal(relay.counters.authenticated, 3 + POOL_MIN + eager, 'only the pool\'s connections (and the carriers) reached the relay')
    // Fast: back to back until the decayed rate passes the mux rate (AUTO_MUX_RATE, or
    // AUTO_MUX_RATE_MUX_LANE against a relay whose addon serves the carriers); the carriers open then.
    const muxAt = d.stats().autoMuxRate ?? AUTO_MUX_RATE
    t.equal(muxAt, relay.acceptPath === 'native' ? AUTO_MUX_RATE_MUX_LANE : AUTO_MUX_RATE, 'the rate follows what the relay serves natively')
    const fast: NetSocket[] = []
    // In batches of 25 at once, so the rate gets there on a slow machine too.
    const burst = async (): Promise<void> => {
      const batch = await Promise.all(Array.from({ length: 25 }, async () => await d.dial({ host: echo.host, port: echo.port, timeoutMs: 3000 })))
      for (const s of batch) {
        s.on('error', () => {})
        s.resume()
        s.end('x')
        fast.push(s)
      }
    }
    while (fast.length < 3 * muxAt && d.stats().mux?.carriers !== 2) {
      await burst()
      if (fast.length >= muxAt) await new Promise((resolve) => setTimeout(resolve, 2))
    }
    // Before each check that wants the destination on mux: fast again (on a
    // loaded machine the steps between take long enough for the rate to decay).
    const fastAgain = async (): Promise<void> => {
      for (let k = 0; k < 3 * muxAt / 25 && d.stats().destinationsOnMux !== 1; k++) await burst()
    }
    await waitFor(() => d.stats().mux?.carriers === 2, () => `carriers up: ${JSON.stringify(d.stats())}`, 3000)
    t.equal(d.stats().mux?.carriers, 2, `fast: two multiplexed connections opened (after ${fast.length} dials, rate ${d.stats().rate}/s in the pool)`)
    await fastAgain()
    t.match(d.stats(), { auto: true, transport: 'mux', destinationsOnMux: 1 })
    const s = await d.dial({ host: echo.host, port: echo.port, timeoutMs: 2000 })
    t.ok(isStream(s), 'a fast dial is a stream')
    t.equal(await echoed(s, 'streamed'), 'streamed', 'and its bytes go both ways')
    const elsewhere = await d.dial({ host: other.host, port: other.port, timeoutMs: 2000 })
    t.notOk(isStream(elsewhere), 'per destination: a slow one still gets a pooled connection')
    t.equal(await echoed(elsewhere, 'elsewhere'), 'elsewhere')
    // A transfer of AUTO_BULK_BYTES or more: once it closed, its destination keeps the pool for a while, however fast new connections come.
    await fastAgain()
    const big = await d.dial({ host: echo.host, port: echo.port, timeoutMs: 2000 })
    t.ok(isStream(big), 'still fast: a stream')
    const payload = Buffer.alloc(AUTO_BULK_BYTES, 7)
    big.on('error', () => {})
    const closed = once(big, 'close')
    big.end(payload)
    t.equal((await readAll(big)).length, payload.length, 'the transfer echoed whole')
    await closed
    for (let i = 0; i < 5; i++) {
      const s = await d.dial({ host: echo.host, port: echo.port, timeoutMs: 2000 })
      t.notOk(isStream(s), `after a bulk transfer: a pooled connection, fast or not (${i})`)
      s.on('error', () => {})
      s.resume()
      s.end('x')
    }
    t.match(d.stats(), { auto: true, transport: 'pool', destinationsOnMux: 0 })
    // Slow again (after 2.5 s the decayed rate is under AUTO_POOL_RATE) the pool serves too.
    await new Promise((resolve) => setTimeout(resolve, 2500))
    const hits = d.stats().hits
    const s2 = await d.dial({ host: echo.host, port: echo.port, timeoutMs: 2000 })
    t.notOk(isStream(s2), 'slow again: a pooled connection')
    t.equal(await echoed(s2, 'pooled'), 'pooled')
    t.equal(d.stats().hits, hits + 1)
    t.match(d.stats(), { auto: true, transport: 'pool', destinationsOnMux: 0, mux: { state: 'live', carriers: 2 } })
  })
}
