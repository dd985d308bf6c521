// End to end: the data plane writes the PROXY header first on the upstream
// socket (warm or fresh), before any client byte, and real peers (nginx
// stream with proxy_protocol, HAProxy with accept-proxy) decode the client
// and listener addresses from it. IPv4 and IPv6 clients, v1 and v2.

import t from 'tap'
import type { ListenerSpec } from '../../src/routing/types.js'
import { connectTo, exchange, waitFor } from './fixtures/net.js'
import { peerAvailable, startPeer } from './fixtures/peers.js'
import { startE2EProxy } from './fixtures/proxy.js'

for (const kind of ['nginx', 'haproxy'] as const) {
  t.test(`${kind}: PROXY v1/v2 from IPv4 and IPv6 clients, pooled and not`, { skip: peerAvailable(kind) ? false : `${kind} not installed` }, async (t) => {
    const peer = await startPeer(kind)
    t.teardown(() => peer.stop())
    for (const version of ['v1', 'v2'] as const) {
      for (const poolSize of [0, 2]) {
        const listeners: ListenerSpec[] = ['127.0.0.1', '::1'].map((host) => ({
          host,
          port: 0,
          routes: [],
          default: { id: `${kind}-${version}-${poolSize}`, endpoints: [{ host: '127.0.0.1', port: peer.port }], proxyProtocol: version, poolSize },
        }))
        const px = await startE2EProxy(listeners)
        t.teardown(() => px.close())
        if (poolSize > 0) {
          await waitFor(() => px.sample('kt_upstream_pool_idle', `backend="127.0.0.1:${peer.port}",upstream="${kind}-${version}-${poolSize}"`) === poolSize, 'pool warm', 3000)
        }
        for (const [i, host] of ['127.0.0.1', '::1'].entries()) {
          const port = px.ports[i] as number
          const c = await connectTo({ host, port })
          const raw = (await exchange(c, peer.request, 1 << 20, 5000)).toString('latin1')
          const body = kind === 'haproxy' ? raw.slice(raw.indexOf('\r\n\r\n') + 4) : raw
          t.equal(body, `${host} ${c.localPort ?? -1} ${host} ${port}\n`, `${version} pool=${poolSize} client ${host}`)
          c.destroy()
        }
        if (poolSize > 0) {
          t.ok((px.sample('kt_upstream_pool_hits_total', `backend="127.0.0.1:${peer.port}",upstream="${kind}-${version}-${poolSize}"`) ?? 0) >= 1, 'header written on a warm socket too')
        }
        await px.close()
      }
    }
  })
}

t.test('haproxy: on a Host-routed listener the header precedes the peeked request bytes', { skip: peerAvailable('haproxy') ? false : 'haproxy not installed' }, async (t) => {
  const peer = await startPeer('haproxy')
  t.teardown(() => peer.stop())
  for (const version of ['v1', 'v2'] as const) {
    const px = await startE2EProxy([{
      host: '127.0.0.1',
      port: 0,
      routes: [{ names: ['echo.test'], upstream: { id: `routed-${version}`, endpoints: [{ host: '127.0.0.1', port: peer.port }], proxyProtocol: version, poolSize: 1 } }],
    }])
    t.teardown(() => px.close())
    const port = px.ports[0] as number
    const c = await connectTo({ host: '127.0.0.1', port })
    const raw = (await exchange(c, 'GET / HTTP/1.1\r\nHost: echo.test\r\nConnection: close\r\n\r\n', 1 << 20, 5000)).toString('latin1')
    t.match(raw, /^HTTP\/1\.1 200 /, `${version}: HAProxy accepted header + request`)
    t.equal(raw.slice(raw.indexOf('\r\n\r\n') + 4), `127.0.0.1 ${c.localPort ?? -1} 127.0.0.1 ${port}\n`)
    c.destroy()
    await px.close()
  }
})
