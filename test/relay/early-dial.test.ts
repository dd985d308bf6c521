// A relay-dialed listener begins each connection's dial as the kernel hands
// the client over, before Node builds its Socket (listener.ts hookEarlyDial;
// issue 12: the relay in the Docker VM then dials the node while the host is
// still busy). What must hold: the OPEN (or the warm connection's BIND) is on
// its way by the time Node emits 'connection'; the refusals accept() makes
// come first, so a refused client never reaches the relay; a connection Node
// does not hand over resets its stream; peek listeners wait for the route;
// and every byte still arrives. A real relay, the data plane, real sockets.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { connect } from 'node:net'
import { startTestRelay } from '../support/relay-path.js'
import { RelayDialer } from '../../src/relay/client.js'
import { ListenerManager } from '../../src/dataplane/listener-manager.js'
import { Registry } from '../../src/observe/metrics.js'
import { silentLogger } from '../../src/observe/logger.js'
import type { Dialer } from '../../src/dataplane/dialer.js'
import type { ListenerSpec, UpstreamSpec } from '../../src/routing/types.js'
import { createNetwork, dockerAvailable, useScratch } from '../support/docker.js'
import { closeKind, echoThrough, startEcho, type TestServer } from '../support/net.js'
import { sleep, waitFor, within } from '../support/wait.js'

const token = randomBytes(32)

interface Tap { teardown (fn: () => unknown): void }

/** An echo server on `host`, closed with the test: `accepts` its connections, `sockets` those still open. */
async function echoServer (t: Tap, host: string): Promise<TestServer> {
  const echo = await startEcho(host)
  t.teardown(() => echo.close())
  return echo
}

/** Connect and wait for the far end to close or reset: what a refused client sees ('end', 'reset', ...). */
async function refusedAt (port: number): Promise<string> {
  // Not dial(): the reset may come before the connect completes here.
  return await within(closeKind(connect({ host: '127.0.0.1', port })), 5000, 'the refused client closed')
}

// Docker first (a network whose gateway the relay may dial; loopback it refuses),
// with nothing awaited between tests.
const skip = await dockerAvailable()
const prefix = skip === null ? await useScratch(t) : ''
const net = skip === null ? await createNetwork(prefix, 'early') : undefined

if (skip !== null || net === undefined) t.test('through a relay, early dials', { skip: skip ?? 'no network' }, () => {})
else {
  const host = net.gateway

  /** A relay, a dialer with `transport`, and a data plane that dials through it. */
  const setup = async (t: Tap, backendPort: number, transport: 'mux' | 'pool'): Promise<{ dialer: RelayDialer, manager: ListenerManager }> => {
    const relay = await startTestRelay({ host: '127.0.0.1', port: 0, token, allow: [`${host}/32`], ports: { min: backendPort, max: backendPort, extra: [] } })
    t.teardown(() => relay.destroy())
    const dialer = new RelayDialer({ host: '127.0.0.1', port: relay.address.port, token, name: 'early', transport, ...(transport === 'pool' ? { poolSize: 2 } : {}) })
    t.teardown(() => dialer.close())
    const manager = new ListenerManager({ logger: silentLogger(), metrics: new Registry(), options: { accessLog: false }, dialers: new Map<string, Dialer>([['relay:early', dialer]]) })
    t.teardown(() => manager.close(200))
    if (transport === 'mux') await dialer.mux?.ready(5000)
    else await dialer.warm(5000)
    return { dialer, manager }
  }

  /** Bind one listener; `seen` gets, at each 'connection', what the dialer had sent by then. */
  const listen = async (manager: ListenerManager, spec: Omit<ListenerSpec, 'host' | 'port'>, seen: () => void): Promise<number> => {
    const res = await manager.apply({ version: 1, listeners: [{ host: '127.0.0.1', port: 0, ...spec }] })
    if (res.failed.length > 0) throw new Error(JSON.stringify(res.failed))
    const port = res.bound[0]?.port as number
    const l = [...manager.listeners.values()].find((x) => x.port === port)
    if (l === undefined) throw new Error('no listener')
    l.server.prependListener('connection', seen)
    return port
  }

  const upstream = (port: number): UpstreamSpec => ({ id: 'c/default/echo:7', endpoints: [{ host, port }], dialer: 'relay:early' })

  t.test('mux: the OPEN has left by the time Node hands the socket over; the bytes all arrive', async (t) => {
    const echo = await echoServer(t, host)
    const { dialer, manager } = await setup(t, echo.port, 'mux')
    const openedAt: number[] = []
    const port = await listen(manager, { routes: [], default: upstream(echo.port) }, () => { openedAt.push(dialer.mux?.stats().opened ?? -1) })
    for (let i = 0; i < 3; i++) {
      const data = randomBytes(200_000 + i)
      const back = await echoThrough(port, data)
      t.ok(back.equals(data), `connection ${i + 1}: ${data.length} bytes back, the same`)
    }
    t.same(openedAt, [1, 2, 3], 'each stream was opened before Node emitted its connection')
    t.equal(dialer.mux?.stats().opened, 3, 'one stream a connection, no more')
  })

  t.test('KT_EARLY_DIAL=0: the stream opens after, in the connection\'s own turn', async (t) => {
    const echo = await echoServer(t, host)
    const { dialer, manager } = await setup(t, echo.port, 'mux')
    const before = process.env.KT_EARLY_DIAL
    process.env.KT_EARLY_DIAL = '0'
    t.teardown(() => { if (before === undefined) delete process.env.KT_EARLY_DIAL; else process.env.KT_EARLY_DIAL = before })
    const openedAt: number[] = []
    const port = await listen(manager, { routes: [], default: upstream(echo.port) }, () => { openedAt.push(dialer.mux?.stats().opened ?? -1) })
    const data = randomBytes(5000)
    t.ok((await echoThrough(port, data)).equals(data))
    t.same(openedAt, [0], 'nothing was opened when Node emitted the connection')
  })

  t.test('pool: the warm connection\'s BIND has left by then too', async (t) => {
    const echo = await echoServer(t, host)
    const { dialer, manager } = await setup(t, echo.port, 'pool')
    const hitsAt: number[] = []
    const port = await listen(manager, { routes: [], default: upstream(echo.port) }, () => { hitsAt.push(dialer.stats().hits) })
    const data = randomBytes(64 * 1024)
    t.ok((await echoThrough(port, data)).equals(data))
    t.same(hitsAt, [1], 'the warm connection was taken before the connection event')
    t.equal(dialer.stats().misses, 0)
  })

  t.test('a source outside loadBalancerSourceRanges never reaches the relay', async (t) => {
    const echo = await echoServer(t, host)
    const { dialer, manager } = await setup(t, echo.port, 'mux')
    const port = await listen(manager, { routes: [], default: upstream(echo.port), sourceRanges: ['10.0.0.0/8'] }, () => {})
    const how = await refusedAt(port)
    t.match(how, /^(reset|end|close)$/, `refused (${how})`)
    t.equal(dialer.mux?.stats().opened, 0, 'no stream was opened for it')
    t.equal(echo.accepts, 0, 'the backend saw nothing')
  })

  t.test('a connection Node does not hand over: its early stream is reset, the backend\'s connection closed', async (t) => {
    const echo = await echoServer(t, host)
    const { dialer, manager } = await setup(t, echo.port, 'mux')
    const port = await listen(manager, { routes: [], default: upstream(echo.port) }, () => {})
    const l = [...manager.listeners.values()].find((x) => x.port === port)
    // One connection held open, then Node's own cap of one: its accept
    // callback closes the next client without a 'connection'.
    const held = connect({ host: '127.0.0.1', port })
    t.teardown(() => { held.destroy() })
    held.on('error', () => {})
    await waitFor(() => echo.sockets.size === 1 && dialer.mux?.stats().streams === 1, 'the held connection through')
    const server = l?.server as { maxConnections?: number }
    server.maxConnections = 1
    const how = await refusedAt(port)
    t.match(how, /^(reset|end|close)$/, `the client was closed (${how})`)
    t.equal(dialer.mux?.stats().opened, 2, 'its early OPEN went')
    await waitFor(() => dialer.mux?.stats().streams === 1, 'its stream gone')
    // The relay may have dialled the backend before the reset reached it, or not: either way nothing of it stays.
    await sleep(300)
    await waitFor(() => echo.sockets.size === 1, 'its backend connection closed')
    t.ok(echo.accepts <= 2)
    t.pass('nothing of it left open on either side; the held connection goes on')
    // And the listener serves again once Node takes connections again.
    delete server.maxConnections
    const data = randomBytes(1000)
    t.ok((await echoThrough(port, data)).equals(data))
  })

  t.test('a listener that peeks for the route dials after the peek', async (t) => {
    const echo = await echoServer(t, host)
    const { dialer, manager } = await setup(t, echo.port, 'mux')
    const openedAt: number[] = []
    const port = await listen(manager, { routes: [{ names: ['echo.test'], upstream: upstream(echo.port) }], default: upstream(echo.port) }, () => { openedAt.push(dialer.mux?.stats().opened ?? -1) })
    const data = Buffer.from('GET / HTTP/1.1\r\nHost: echo.test\r\n\r\n')
    t.ok((await echoThrough(port, data)).equals(data))
    t.same(openedAt, [0], 'no stream before the request named its host')
    t.equal(dialer.mux?.stats().opened, 1)
  })
}
