// A non-blocking connect to a local backend is usually established by the
// time connect() returns (loopback, or a node on the relay's own bridge: the
// SYN-ACK is handled as the socket is released). The lane's dial (kt_lane.c)
// and the relay's mux streams (kt_mux.c) then go on at once, through
// kt_established_now, instead of waiting an epoll turn to hear it: a stream's
// early DATA goes to the node in the same pass as its OPEN. The test variant
// counts those connects; the bytes must arrive exactly as on the epoll path
// (which the other native suites keep exercising: refused and black-holed
// dials still take it).
import t from 'tap'
import net from 'node:net'
import { once } from 'node:events'
import { randomBytes } from 'node:crypto'
import { PROBE, variantSkip, variantSplicer } from './fixtures/variant.js'
import { startRelay } from '../../src/relay/server.js'
import { encodeAuth, encodeConnect } from '../../src/relay/protocol.js'
import { MuxDecoder, muxHeader, MUX_OPEN, MUX_DATA, MUX_FIN } from '../../src/relay/mux-frame.js'
import { dockerAvailable, useScratch, createNetwork, listenOnGateway } from '../support/docker.js'
import { waitFor } from '../support/wait.js'

const skip = await variantSkip()

/** Echo server: each connection gets back what it sent, then a FIN. */
function echo (s: net.Socket): void {
  s.on('error', () => {})
  s.pipe(s)
}

t.test('the lane: a loopback backend is spliced at once, bytes exact', { skip }, async (t) => {
  const { lane: b, engines, hooks } = variantSplicer(t)
  const server = net.createServer({ allowHalfOpen: true }, echo)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.close() })
  const to = (server.address() as net.AddressInfo).port
  const lane = b.createLane(engines, () => {})
  t.teardown(() => { b.laneClose(lane) })
  const front = net.createServer()
  await new Promise<void>((resolve) => front.listen({ port: 0, host: '127.0.0.1' }, resolve))
  const port = (front.address() as net.AddressInfo).port
  const l = b.laneListen(lane, 1, (front as unknown as { _handle: { fd: number } })._handle.fd, false)
  b.laneConfigure(l, 10000, 5000, 60000, 30000, 3, 0, 0)
  b.laneSetBackends(l, [0], ['127.0.0.1'], [to])
  b.laneStart?.(l)
  front.close()
  const before = hooks.probe(PROBE.connectedNow)
  for (let i = 0; i < 20; i++) {
    const payload = randomBytes(1000 + i * 997)
    const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true })
    c.on('connect', () => { c.end(payload) })
    const chunks: Buffer[] = []
    c.on('data', (d: Buffer) => chunks.push(d))
    await once(c, 'end')
    c.destroy()
    t.ok(Buffer.concat(chunks).equals(payload), `connection ${i}: its bytes came back exactly`)
  }
  t.ok(hooks.probe(PROBE.connectedNow) - before >= 1, `connects established on return: ${hooks.probe(PROBE.connectedNow) - before} of 20`)
})

const noDocker = skip === false ? await dockerAvailable() : null
t.test('the relay\'s mux: OPEN and DATA in one write reach a node on the bridge at once, bytes exact', { skip: skip !== false ? skip : (noDocker ?? false) }, async (t) => {
  const { splicer, hooks } = variantSplicer(t)
  const prefix = await useScratch(t)
  const nw = await createNetwork(prefix)
  const backend = await listenOnGateway(nw, echo)
  t.teardown(backend.close)
  const token = randomBytes(32)
  const relay = await startRelay({ host: '127.0.0.1', port: 0, token, allow: [`${nw.gateway}/32`], ports: { min: 30000, max: 32767, extra: [backend.port] }, native: splicer })
  t.teardown(() => relay.destroy())
  t.equal(relay.acceptPath, 'native', 'the relay accepts on the lane')
  const s = net.connect({ host: '127.0.0.1', port: relay.address.port, allowHalfOpen: true })
  t.teardown(() => { s.destroy() })
  await once(s, 'connect')
  const got = new Map<number, Buffer[]>()
  const fins = new Set<number>()
  const dec = new MuxDecoder()
  s.on('data', (d: Buffer) => {
    dec.push(d, { onFrame: (id, type, payload) => {
      if (type === MUX_DATA) got.set(id, [...(got.get(id) ?? []), Buffer.from(payload)])
      if (type === MUX_FIN) fins.add(id)
    } })
  })
  s.write(Buffer.concat([encodeAuth(token), Buffer.from([3, 0])]))
  const before = hooks.probe(PROBE.connectedNow)
  const sent = new Map<number, Buffer>()
  for (let id = 1; id <= 10; id++) {
    const bind = encodeConnect({ address: nw.gateway, port: backend.port })
    const payload = randomBytes(100 + id * 311)
    sent.set(id, payload)
    // The OPEN, its DATA and its FIN in one write: the relay reads them together.
    s.write(Buffer.concat([muxHeader(id, MUX_OPEN, bind.length), bind, muxHeader(id, MUX_DATA, payload.length), payload, muxHeader(id, MUX_FIN, 0)]))
  }
  await waitFor(() => fins.size === 10, 'every stream echoed and finished', 10_000, { seen: () => [...fins] })
  for (const [id, payload] of sent) t.ok(Buffer.concat(got.get(id) ?? []).equals(payload), `stream ${id}: its bytes came back exactly`)
  t.ok(hooks.probe(PROBE.connectedNow) - before >= 1, `node connects established on return: ${hooks.probe(PROBE.connectedNow) - before} of 10`)
})
