// A client that sends its whole first flight and its FIN together (write +
// end) on a peeking listener: the peek decides on the data, the FIN must
// still reach the backend, and the backend's reply and FIN must come back.
// Found by the issue #9 flood: the 'end' fired while the client sat paused
// between peek and splice, and the connection hung until the idle timeout.
import t from 'tap'
import { connect } from 'node:net'
import { startProxy, startServer } from '../support/net.js'

function exchange (port: number, host: string, flight: string): Promise<{ got: string, how: string }> {
  return new Promise((resolve) => {
    const s = connect({ port, host, allowHalfOpen: true })
    let got = ''
    let how = 'close'
    const timer = setTimeout(() => { how = 'hung'; s.destroy() }, 3000)
    s.on('data', (d: Buffer) => { got += d.toString('latin1') })
    s.on('end', () => { how = 'fin'; s.end() })
    s.on('error', (e: NodeJS.ErrnoException) => { how = e.code ?? 'error' })
    s.on('close', () => { clearTimeout(timer); resolve({ got, how }) })
    s.once('connect', () => { s.write(flight, 'latin1'); s.end() })
  })
}

t.test('FIN in the same segment as the deciding flight is forwarded (Host, SNI miss, not TLS or HTTP)', async (t) => {
  // The backend answers only once the client's FIN reached it.
  const be = await startServer((s) => {
    let n = 0
    s.on('data', (d: Buffer) => { n += d.length })
    s.on('end', () => { s.end(`got ${n}`) })
  })
  t.teardown(() => be.close())
  const px = await startProxy([{
    host: '127.0.0.1',
    port: 0,
    routes: [{ names: ['a.test'], upstream: { id: 'a', endpoints: [{ host: '127.0.0.1', port: be.port }] } }],
    default: { id: 'd', endpoints: [{ host: '127.0.0.1', port: be.port }] },
  }], { peekTimeoutMs: 2000 })
  t.teardown(() => px.close())
  const head = 'GET / HTTP/1.1\r\nHost: a.test\r\n\r\n'
  for (const [what, flight] of [['Host route', head], ['default route (no name)', 'GET / HTTP/1.0\r\n\r\n'], ['not TLS or HTTP', '\x00\x01binary\n']] as const) {
    const r = await exchange(px.port, px.host, flight)
    t.same(r, { got: `got ${flight.length}`, how: 'fin' }, what)
  }
})
