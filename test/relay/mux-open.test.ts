// When a stream's OPEN leaves the host (mux-client.ts HostMux.open): on a
// quiet carrier at once, inside the dial, so the relay dials the node while
// the host sets the connection up and reads the client's first bytes (paired
// turns in the Mac-like placement: 80 µs sooner to the first byte than
// leaving at the end of the turn); on a busy carrier (more than 4 streams)
// one turn later, with the clients' first bytes (mux-link.ts uncork). Either
// way the frames reach the relay whole and in order. Small DATA frames follow
// the same rule (MuxLink.quiet): at once while few streams are open.
import t from 'tap'
import net from 'node:net'
import { once } from 'node:events'
import { HostMux } from '../../src/relay/mux-client.js'
import { MuxDecoder, MUX_OPEN } from '../../src/relay/mux-frame.js'
import { parseConnect } from '../../src/relay/protocol.js'
import { waitFor } from '../support/wait.js'

async function carrier (t: { teardown (fn: () => void): void }): Promise<{ mux: HostMux, sock: net.Socket, opens: Array<{ id: number, port: number }> }> {
  const opens: Array<{ id: number, port: number }> = []
  const server = net.createServer((s) => {
    const dec = new MuxDecoder()
    let first = true
    s.on('data', (d: Buffer) => {
      // The carrier's first two bytes are its MUX command, then frames.
      if (first) { first = false; d = d.subarray(2) }
      dec.push(d, { onFrame: (id, type, payload) => {
        if (type !== MUX_OPEN) return
        const p = parseConnect(payload)
        if (p.kind === 'ok') opens.push({ id, port: p.value.destination.port })
      } })
    })
    s.on('error', () => {})
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.close() })
  const sock = net.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port })
  await once(sock, 'connect')
  const mux = new HostMux(sock, () => {})
  t.teardown(() => { mux.shutdown() })
  return { mux, sock, opens }
}

t.test('a quiet carrier writes the OPEN at once; a busy one holds it a turn; all arrive in order', async (t) => {
  const { mux, sock, opens } = await carrier(t)
  // Let the MUX command leave first.
  await new Promise((resolve) => setImmediate(resolve))
  // The streams are reset when the carrier shuts at teardown: their errors are expected.
  const open = (port: number): void => { mux.open({ address: '10.0.0.1', port }, undefined, false).on('error', () => {}) }
  for (let i = 1; i <= 4; i++) {
    open(30000 + i)
    t.equal(sock.writableCorked, 0, `OPEN ${i}: not corked`)
    t.equal(sock.writableLength, 0, `OPEN ${i}: already handed to the kernel`)
  }
  open(30005)
  t.equal(sock.writableCorked, 1, 'OPEN 5 (4 streams open): corked until the turn after next')
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(sock.writableCorked, 1, 'still held after one turn')
  await waitFor(() => opens.length === 5, 'all five OPENs at the relay', 5000, { seen: () => opens })
  t.same(opens, [1, 2, 3, 4, 5].map((id) => ({ id, port: 30000 + id })), 'whole, in order, each with its destination')
  t.equal(sock.writableCorked, 0, 'uncorked afterwards')
})

t.test('small DATA on a quiet carrier leaves at once; on a busy one it is coalesced with the turn', async (t) => {
  const { mux, sock } = await carrier(t)
  await new Promise((resolve) => setImmediate(resolve))
  const open = (port: number): ReturnType<HostMux['open']> => mux.open({ address: '10.0.0.1', port }, undefined, false).on('error', () => {})
  const s1 = open(30001)
  s1.write(Buffer.from('GET / HTTP/1.1\r\n\r\n'))
  t.equal(sock.writableCorked, 0, 'one stream open: DATA not corked')
  t.equal(sock.writableLength, 0, 'one stream open: DATA already handed to the kernel')
  const more = [30002, 30003, 30004, 30005].map(open)
  await new Promise((resolve) => setImmediate(resolve))
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(sock.writableCorked, 0, 'the held OPEN went out')
  more[0]?.write(Buffer.from('x'))
  t.equal(sock.writableCorked, 1, 'five streams open: DATA corked until the turn ends')
})
