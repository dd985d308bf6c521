// Through the native lane: a refused connect is retried on another backend with
// the client's bytes intact; when every attempt fails the client is reset
// promptly and counted; a black-holed backend times out at --connect-timeout
// (±10%) and the connect is retried elsewhere.
import t from 'tap'
import { createServer, type AddressInfo, type Socket, connect } from 'node:net'
import { once } from 'node:events'
import { dial, l4, readAll, startEcho, upstream, waitFor } from '../support/net.js'
import { createNetns, netnsAvailable } from '../support/netns.js'
import { laneSkip, startLaneProxy } from './lane-proxy.js'

const skip = laneSkip()

async function deadPort (): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1')
  await once(s, 'listening')
  const p = (s.address() as AddressInfo).port
  await new Promise((resolve) => s.close(resolve))
  return p
}

t.test('a refused connect is retried on another backend, bytes intact', { skip }, async (t) => {
  const echo = await startEcho()
  t.teardown(() => echo.close())
  const px = await startLaneProxy([l4(upstream('u', await deadPort(), await deadPort(), echo.port))])
  t.teardown(() => px.close())
  t.ok(px.manager.listeners.get(`${px.hosts[0]}:0`)?.lane, 'the listener runs on the native lane')
  for (let i = 0; i < 6; i++) {
    const c = await dial(px.ports[0] as number, px.hosts[0])
    c.write(`hello-${i}`)
    c.end()
    t.equal((await readAll(c)).toString(), `hello-${i}`)
  }
  const errs = px.registry.counter('kt_upstream_connect_errors_total', '')
  await waitFor(() => errs.total({ code: 'ECONNREFUSED' }) > 0, 'refusals counted by code', 2000)
  await waitFor(() => px.registry.counter('kt_connections_total', '').total({ outcome: 'eof' }) === 6, 'six clean closes counted', 2000)
})

t.test('every backend down: the client is reset promptly, counted, and the proxy keeps serving', { skip }, async (t) => {
  const dead = [await deadPort(), await deadPort(), await deadPort(), await deadPort()]
  const echo = await startEcho()
  t.teardown(() => echo.close())
  const px = await startLaneProxy([l4(upstream('bad', ...dead)), l4(upstream('good', echo.port))])
  t.teardown(() => px.close())
  const start = Date.now()
  // The lane can reset before the client's own connect completes: either is a prompt refusal.
  const kind = await new Promise<string>((resolve) => {
    const c: Socket = connect({ host: px.hosts[0], port: px.ports[0] as number })
    let k: string | undefined
    c.on('connect', () => { c.write('lost?') })
    c.on('data', () => {})
    c.on('end', () => { k ??= 'end' })
    c.on('error', (e: NodeJS.ErrnoException) => { k ??= e.code ?? 'error' })
    c.on('close', () => resolve(k ?? 'close'))
  })
  t.ok(['ECONNRESET', 'end', 'close', 'EPIPE'].includes(kind), `client closed (${kind})`)
  t.ok(Date.now() - start < 1000, 'promptly')
  const conns = px.registry.counter('kt_connections_total', '')
  await waitFor(() => conns.total({ outcome: 'connect_failed' }) === 1, 'connect_failed counted', 2000)
  await waitFor(() => px.registry.counter('kt_upstream_connect_errors_total', '').total() === 3, 'exactly 3 attempts', 2000)
  const ok = await dial(px.ports[1] as number, px.hosts[1])
  ok.end('still serving')
  t.equal((await readAll(ok)).toString(), 'still serving')
})

t.test('connect timeout (black-holed backend in a test netns), then retry elsewhere', { skip: skip !== false ? skip : netnsAvailable() ? false : 'needs ip netns (root)' }, async (t) => {
  const ns = createNetns()
  t.teardown(() => ns.remove())
  ns.exec(['iptables', '-A', 'INPUT', '-p', 'tcp', '--dport', '9', '-j', 'DROP'])
  const echo = await startEcho()
  t.teardown(() => echo.close())
  const spec = { id: 'u', endpoints: [{ host: ns.nsIp, port: 9 }, { host: '127.0.0.1', port: echo.port }] }
  const px = await startLaneProxy([l4(spec)], { connectTimeoutMs: 400 })
  t.teardown(() => px.close())
  const start = Date.now()
  const c = await dial(px.ports[0] as number, px.hosts[0])
  c.end('through')
  t.equal((await readAll(c)).toString(), 'through')
  const took = Date.now() - start
  t.ok(took >= 360 && took < 440 + 100, `first attempt timed out at 400 ms ±10%, then retried (${took} ms)`)
  await waitFor(() => px.registry.counter('kt_upstream_connect_errors_total', '').total({ code: 'KT_ERR_CONNECT_TIMEOUT' }) === 1, 'timeout counted', 2000)
})
