// Connect failures: retried on another backend before any byte is
// forwarded, at most 3 attempts; total failure closes the client promptly.
import t from 'tap'
import { createServer, type AddressInfo } from 'node:net'
import { once } from 'node:events'
import { closeKind, dial, l4, readAll, startEcho, startProxy, upstream, waitFor } from '../support/net.js'
import { createNetns, netnsAvailable } from '../support/netns.js'

async function deadPort (): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1')
  await once(s, 'listening')
  const p = (s.address() as AddressInfo).port
  await new Promise((resolve) => s.close(resolve))
  return p
}

t.test('a refused connect is retried on another backend, and the client bytes arrive intact', async (t) => {
  const echo = await startEcho()
  t.teardown(() => echo.close())
  const dead1 = await deadPort()
  const dead2 = await deadPort()
  const px = await startProxy([l4(upstream('u', dead1, dead2, echo.port))])
  t.teardown(() => px.close())
  for (let i = 0; i < 6; i++) {
    const c = await dial(px.port, px.host)
    c.write(`hello-${i}`)
    c.end()
    t.equal((await readAll(c)).toString(), `hello-${i}`)
  }
  const errs = px.registry.counter('kt_upstream_connect_errors_total', '')
  t.ok(errs.total({ code: 'ECONNREFUSED' }) > 0, 'refusals are counted by code')
})

t.test('when every backend fails the client is closed promptly and the proxy keeps serving', async (t) => {
  const dead = [await deadPort(), await deadPort(), await deadPort(), await deadPort()]
  const echo = await startEcho()
  t.teardown(() => echo.close())
  const px = await startProxy([l4(upstream('bad', ...dead)), l4(upstream('good', echo.port))])
  t.teardown(() => px.close())
  const start = Date.now()
  const c = await dial(px.ports[0] as number, px.hosts[0])
  c.write('lost?')
  const kind = await closeKind(c)
  t.ok(['reset', 'end', 'close'].includes(kind), `client closed (${kind})`)
  t.ok(Date.now() - start < 1000, 'promptly')
  const conns = px.registry.counter('kt_connections_total', '')
  await waitFor(() => conns.total({ outcome: 'connect_failed' }) === 1, 'connect_failed counted', 2000)
  t.equal(px.registry.counter('kt_upstream_connect_errors_total', '').total(), 3, 'exactly 3 attempts')
  const ok = await dial(px.ports[1] as number, px.hosts[1])
  ok.end('still serving')
  t.equal((await readAll(ok)).toString(), 'still serving')
})

t.test('connect timeout (black-holed backend in a test netns), then retry elsewhere', { skip: netnsAvailable() ? false : 'needs ip netns (root)' }, async (t) => {
  const ns = createNetns()
  t.teardown(() => ns.remove())
  ns.exec(['iptables', '-A', 'INPUT', '-p', 'tcp', '--dport', '9', '-j', 'DROP'])
  const echo = await startEcho()
  t.teardown(() => echo.close())
  const spec = { id: 'u', endpoints: [{ host: ns.nsIp, port: 9 }, { host: '127.0.0.1', port: echo.port }] }
  const px = await startProxy([l4(spec)], { connectTimeoutMs: 400 })
  t.teardown(() => px.close())
  const start = Date.now()
  const c = await dial(px.port, px.host)
  c.end('through')
  t.equal((await readAll(c)).toString(), 'through')
  const took = Date.now() - start
  t.ok(took >= 360 && took < 1500, `first attempt timed out at ~400 ms, then retried (${took} ms)`)
  t.equal(px.registry.counter('kt_upstream_connect_errors_total', '').total({ code: 'KT_ERR_CONNECT_TIMEOUT' }), 1)
})
