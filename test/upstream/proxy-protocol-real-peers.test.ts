// Our PROXY headers, decoded by real peers: nginx (stream, proxy_protocol)
// and HAProxy (accept-proxy), v1 and v2, for IPv4, IPv6 and IPv4-mapped
// clients. A small front listener stands in for the data plane: it accepts
// the client, dials the peer, writes the header first, then splices.

import t from 'tap'
import { createServer, connect, type Server, type Socket } from 'node:net'
import { encodeProxyHeader } from '../../src/dataplane/proxy-protocol.js'
import type { ProxyProtocolVersion } from '../../src/routing/types.js'
import { startPeer, peerAvailable, type Peer } from './fixtures/peers.js'
import { exchange } from './fixtures/net.js'

const seen: string[] = []

function front (host: string, version: ProxyProtocolVersion, peerPort: number): Promise<Server> {
  const srv = createServer((c) => {
    seen.push(c.remoteAddress ?? '')
    c.on('error', () => {})
    const up = connect(peerPort, '127.0.0.1')
    up.on('error', () => c.destroy())
    up.write(encodeProxyHeader(version, { sourceAddress: c.remoteAddress, sourcePort: c.remotePort, destAddress: c.localAddress, destPort: c.localPort }))
    c.pipe(up).pipe(c)
  })
  return new Promise((resolve, reject) => { srv.once('error', reject); srv.listen(0, host, () => resolve(srv)) })
}

const clients: Array<{ name: string, listen: string, connect: string, expectSrc: string, expectDst: string }> = [
  { name: 'IPv4', listen: '127.0.0.1', connect: '127.0.0.1', expectSrc: '127.0.0.1', expectDst: '127.0.0.1' },
  { name: 'IPv6', listen: '::1', connect: '::1', expectSrc: '::1', expectDst: '::1' },
  // An IPv6 socket bound to a mapped address accepts IPv4 clients and reports them as ::ffff:127.0.0.1.
  { name: 'IPv4-mapped', listen: '::ffff:127.0.0.1', connect: '127.0.0.1', expectSrc: '127.0.0.1', expectDst: '127.0.0.1' },
]

for (const kind of ['nginx', 'haproxy'] as const) {
  t.test(`${kind} decodes our headers`, { skip: peerAvailable(kind) ? false : `${kind} not installed` }, async (t) => {
    const peer: Peer = await startPeer(kind)
    t.teardown(() => peer.stop())
    for (const version of ['v1', 'v2'] as const) {
      for (const c of clients) {
        const srv = await front(c.listen, version, peer.port)
        t.teardown(() => new Promise<void>((resolve) => srv.close(() => resolve())))
        const port = (srv.address() as { port: number }).port
        const sock: Socket = await new Promise((resolve, reject) => {
          const s = connect(port, c.connect)
          s.once('connect', () => resolve(s))
          s.once('error', reject)
        })
        t.teardown(() => { sock.destroy() })
        const raw = (await exchange(sock, peer.request, 1 << 20, 5000)).toString('latin1')
        const body = kind === 'haproxy' ? raw.slice(raw.indexOf('\r\n\r\n') + 4) : raw
        t.equal(body, `${c.expectSrc} ${sock.localPort ?? -1} ${c.expectDst} ${port}\n`, `${version} ${c.name}`)
        if (c.name === 'IPv4-mapped') t.equal(seen.at(-1), '::ffff:127.0.0.1', 'the front really saw a mapped address')
        sock.destroy()
      }
    }
  })
}
