// A multiplexed carrier driven frame by frame, as a host that breaks the
// rules would: malformed headers and OPENs, a duplicate OPEN, DATA after FIN,
// DATA and WINDOW over the window, BUSY at the cap, early DATA and a FIN
// before the dial completes, a PROXY v2 header. Each case checks the frames
// that come back, the counters and the warning logged. The same file runs
// over the addon's lane (test/relay/native/mux-frames.test.ts), where
// kt_mux.c serves the carrier: both paths must answer alike.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'
import { once } from 'node:events'
import type { RelayHandle } from '../../src/relay/server.js'
import { startTestRelay, relayPath } from '../support/relay-path.js'
import { encodeAuth, encodeConnect, Status } from '../../src/relay/protocol.js'
import { MuxDecoder, muxHeader, muxWindow, MUX_OPEN, MUX_DATA, MUX_FIN, MUX_RST, MUX_WINDOW } from '../../src/relay/mux-frame.js'
import type { RelayLogger } from '../../src/relay/log.js'
import { dockerAvailable, useScratch, createNetwork, listenOnGateway, readAll, type TestNetwork } from '../support/docker.js'
import { sleep, waitFor } from '../support/wait.js'

const token = randomBytes(32)

interface Frame { id: number, type: number, payload: Buffer }

/** A carrier spoken to by hand: frames out, decoded frames in. */
class RawCarrier {
  readonly frames: Frame[] = []
  closed = false
  private readonly dec = new MuxDecoder()
  constructor (readonly sock: Socket) {
    sock.on('data', (b: Buffer) => { this.dec.push(b, { onFrame: (id, type, payload) => { this.frames.push({ id, type, payload: Buffer.from(payload) }) } }) })
    sock.on('error', () => {})
    // The relay's end of it: a FIN (this side is half-open) or a reset.
    sock.on('end', () => { this.closed = true })
    sock.on('close', () => { this.closed = true })
  }

  send (...parts: Buffer[]): void { this.sock.write(Buffer.concat(parts)) }

  of (id: number): Frame[] { return this.frames.filter((f) => f.id === id) }

  async rst (id: number): Promise<number> {
    await waitFor(() => this.of(id).some((f) => f.type === MUX_RST), `an RST for stream ${id}`, 5000, { seen: () => this.frames.map((f) => [f.id, f.type, f.payload.length]) })
    return this.of(id).find((f) => f.type === MUX_RST)?.payload[0] as number
  }
}

const frame = (id: number, type: number, payload: Buffer = Buffer.alloc(0)): Buffer => Buffer.concat([muxHeader(id, type, payload.length), payload])

const skip = await dockerAvailable()
if (skip !== null) t.plan(0, skip)
else {
  const prefix = await useScratch(t)
  const net: TestNetwork = await createNetwork(prefix)
  const parts = net.gateway.split('.').map(Number)
  // An address on the test network nobody holds: a dial to it stays pending until the relay's deadline.
  const silent = `${parts[0]}.${parts[1]}.${parts[2]}.${((parts[3] as number) + 200) % 255}`

  interface Setup { relay: RelayHandle, host: string, port: number, warns: Array<{ obj: Record<string, unknown>, msg: string }>, carrier (): Promise<RawCarrier> }

  async function setup (t: { teardown (fn: () => unknown): void }, onConn: (s: Socket) => void, extra: { maxConnections?: number } = {}): Promise<Setup> {
    // Node connections are reset in several cases: their errors are expected.
    const backend = await listenOnGateway(net, (s) => { s.on('error', () => {}); onConn(s) })
    t.teardown(backend.close)
    const warns: Setup['warns'] = []
    const logger: RelayLogger = {
      debug: () => {},
      info: () => {},
      warn: (o, msg) => { warns.push({ obj: o as Record<string, unknown>, msg: msg ?? '' }) },
      error: () => {},
    }
    const relay = await startTestRelay({ host: '127.0.0.1', port: 0, token, allow: [`${net.gateway}/32`, `${silent}/32`], ports: { min: 30000, max: 32767, extra: [backend.port] }, connectTimeoutMs: 1500, logger, ...extra })
    t.teardown(() => relay.destroy())
    const carrier = async (): Promise<RawCarrier> => {
      const s = connect({ host: '127.0.0.1', port: relay.address.port, allowHalfOpen: true })
      t.teardown(() => { s.destroy() })
      await once(s, 'connect')
      const c = new RawCarrier(s)
      c.send(encodeAuth(token), Buffer.from([3, 0]))
      return c
    }
    return { relay, host: backend.host, port: backend.port, warns, carrier }
  }

  t.test(`over the ${relayPath()} path`, async (t) => {
    t.test('a malformed OPEN is an RST HEADER; the carrier and its other streams go on', async (t) => {
      const { relay, host, port, warns, carrier } = await setup(t, (s) => { s.pipe(s) })
      const c = await carrier()
      const good = encodeConnect({ address: host, port })
      const cases: Array<[Buffer, RegExp]> = [
        [Buffer.from([2, 0, ...good.subarray(2)]), /OPEN for a UDP flow/],
        [Buffer.concat([Buffer.from([1, 4]), good.subarray(2)]), /OPEN with ANSWER/],
        [Buffer.concat([good, Buffer.from('xyz')]), /OPEN with 3 bytes after its BIND/],
        [good.subarray(0, 5), /OPEN truncated/],
        [Buffer.from([1, 2, ...good.subarray(2)]), /PROXY v2 asked without a source/],
        [Buffer.from([9, 0]), /unknown command 9/],
        [Buffer.concat([good, Buffer.alloc(100)]), /OPEN with 100 bytes after its BIND/],
        [Buffer.from([1, 0, 4, 10, 0, 0, 1, 0, 0]), /destination port 0/],
      ]
      let id = 1
      for (const [payload] of cases) c.send(frame(id++, MUX_OPEN, payload))
      // A good stream on the same carrier, after them.
      c.send(frame(id, MUX_OPEN, good), frame(id, MUX_DATA, Buffer.from('still here')), frame(id, MUX_FIN))
      for (let i = 1; i < id; i++) t.equal(await c.rst(i), Status.HEADER, `OPEN ${i}: RST HEADER`)
      await waitFor(() => c.of(id).some((f) => f.type === MUX_FIN), 'the good stream ends', 5000)
      t.equal(Buffer.concat(c.of(id).filter((f) => f.type === MUX_DATA).map((f) => f.payload)).toString(), 'still here')
      t.notOk(c.of(id).some((f) => f.type === MUX_RST), 'the good stream is not reset')
      t.notOk(c.closed, 'the carrier is still open')
      t.equal(relay.counters.refusedHeader, cases.length)
      t.equal(relay.counters.dialed, 1)
      await waitFor(() => warns.length >= cases.length, 'a warning per refused OPEN')
      cases.forEach(([, re], i) => {
        t.match(warns.find((w) => w.obj.stream === i + 1), { msg: 'relay stream refused or failed', obj: { outcome: 'header', detail: re } }, `OPEN ${i + 1}: ${re.source}`)
      })
    })

    t.test('a header that cannot be the protocol\'s breaks the carrier: its streams are reset', async (t) => {
      const bad: Array<[Buffer, RegExp]> = [
        [muxHeader(0, MUX_DATA, 1), /stream id 0/],
        [muxHeader(5, 9, 0), /unknown frame type 9/],
        [muxHeader(5, MUX_DATA, 65537), /DATA of 65537 bytes, over the 65536-byte limit/],
        [muxHeader(5, MUX_FIN, 2), /FIN with 2 bytes/],
        [muxHeader(5, MUX_RST, 0), /RST with 0 bytes \(1 expected\)/],
        [muxHeader(5, MUX_WINDOW, 3), /WINDOW with 3 bytes \(4 expected\)/],
      ]
      for (const [hdr, re] of bad) {
        const resets: unknown[] = []
        let got = 0
        const { relay, host, port, warns, carrier } = await setup(t, (s) => { s.on('error', (e) => resets.push(e)); s.on('data', () => { got++ }) })
        const c = await carrier()
        c.send(frame(1, MUX_OPEN, encodeConnect({ address: host, port })), frame(1, MUX_DATA, Buffer.from('x')))
        await waitFor(() => got === 1, 'the first stream reached its node')
        c.send(hdr)
        await waitFor(() => c.closed, 'the carrier is closed', 5000)
        await waitFor(() => resets.length === 1, 'its stream\'s node connection is reset', 5000)
        await waitFor(() => warns.some((w) => w.msg === 'relay mux connection broken'), 'a warning')
        t.match(warns.find((w) => w.msg === 'relay mux connection broken')?.obj, { detail: re }, re.source)
        await waitFor(() => relay.counters.active === 0, 'nothing left open on the relay', 5000)
      }
    })

    t.test('an OPEN for a stream that is open breaks the carrier', async (t) => {
      const { relay, host, port, warns, carrier } = await setup(t, (s) => { s.resume() })
      const c = await carrier()
      const open = frame(7, MUX_OPEN, encodeConnect({ address: host, port }))
      c.send(open)
      await waitFor(() => relay.counters.spliced === 1, 'spliced')
      c.send(open)
      await waitFor(() => c.closed, 'the carrier is closed', 5000)
      await waitFor(() => warns.length > 0, 'a warning')
      t.match(warns[0], { msg: 'relay mux connection broken', obj: { detail: 'OPEN for stream 7, which is open' } })
      await waitFor(() => relay.counters.active === 0, 'nothing left open', 5000)
    })

    t.test('DATA after FIN, DATA over the window and WINDOW over it reset that stream only', async (t) => {
      const { relay, host, port, warns, carrier } = await setup(t, (s) => { s.resume() })
      const c = await carrier()
      const open = (id: number, address = host): Buffer => frame(id, MUX_OPEN, encodeConnect({ address, port }))
      // 1: FIN, then DATA. 2: a dial still pending (the silent address), 256 KiB + 1 byte of early DATA.
      // 3: a WINDOW that lifts the credit over 256 KiB. 4: a good stream on the same carrier.
      c.send(open(1), frame(1, MUX_FIN), frame(1, MUX_DATA, Buffer.from('late')))
      c.send(open(2, silent), ...Array.from({ length: 4 }, () => frame(2, MUX_DATA, Buffer.alloc(65536))), frame(2, MUX_DATA, Buffer.from('!')))
      c.send(open(3), muxWindow(3, 1))
      c.send(open(4), frame(4, MUX_DATA, Buffer.from('ok')))
      t.equal(await c.rst(1), Status.HEADER, 'DATA after FIN')
      t.equal(await c.rst(2), Status.HEADER, 'DATA over the window')
      t.equal(await c.rst(3), Status.HEADER, 'WINDOW over the window')
      t.notOk(c.of(4).some((f) => f.type === MUX_RST), 'stream 4 goes on')
      t.notOk(c.closed)
      await waitFor(() => warns.length >= 3, 'three warnings')
      const detail = (id: number): unknown => warns.find((w) => w.obj.stream === id)?.obj.detail
      t.equal(detail(1), 'DATA after FIN')
      t.equal(detail(2), 'DATA over the stream\'s window')
      t.equal(detail(3), 'WINDOW over the stream\'s window')
      t.equal(relay.counters.refusedHeader, 0, 'not refusals: the streams were open')
    })

    t.test('at the connection cap an OPEN is an RST BUSY; under it again, streams open', async (t) => {
      const { relay, host, port, warns, carrier } = await setup(t, (s) => { s.pipe(s) }, { maxConnections: 3 })
      const c = await carrier()
      const open = (id: number): Buffer => frame(id, MUX_OPEN, encodeConnect({ address: host, port }))
      // The carrier is one connection, each stream one more: streams 1 and 2 fit, 3 does not.
      c.send(open(1), open(2))
      await waitFor(() => relay.counters.spliced === 2, 'two streams spliced')
      c.send(open(3))
      t.equal(await c.rst(3), Status.BUSY)
      t.equal(relay.counters.refusedBusy, 1)
      await waitFor(() => warns.some((w) => w.obj.stream === 3), 'a warning')
      t.match(warns.find((w) => w.obj.stream === 3)?.obj, { outcome: 'busy', detail: 'relay at its connection cap, or closing', dst: `${host}:${port}` })
      c.send(frame(1, MUX_RST, Buffer.from([0])))
      await waitFor(() => relay.counters.active === 2, 'stream 1 gone')
      c.send(open(4), frame(4, MUX_DATA, Buffer.from('room again')))
      await waitFor(() => c.of(4).some((f) => f.type === MUX_DATA), 'stream 4 echoes')
      t.equal(c.of(4).find((f) => f.type === MUX_DATA)?.payload.toString(), 'room again')
    })

    t.test('early DATA and a FIN before the dial completes, with PROXY v2: the node gets the header, the bytes, then EOF; a clean close both ways', async (t) => {
      let got: Promise<Buffer> | undefined
      const { relay, host, port, carrier } = await setup(t, (s) => { got = readAll(s); s.end('bye') })
      const c = await carrier()
      const payload = encodeConnect({ address: host, port }, { address: '10.1.2.3', port: 4567 }, true)
      c.send(frame(9, MUX_OPEN, payload), frame(9, MUX_DATA, Buffer.from('hello')), frame(9, MUX_FIN))
      await waitFor(() => got !== undefined, 'the node connection')
      const b = await (got as Promise<Buffer>)
      t.equal(b.subarray(0, 12).toString('hex'), '0d0a0d0a000d0a515549540a', 'the PROXY v2 signature first')
      t.equal(b[13], 0x11, 'TCP over IPv4')
      t.equal(b.readUInt16BE(14), 12)
      t.equal(b.subarray(16, 20).join('.'), '10.1.2.3', 'the source')
      t.equal(b.subarray(20, 24).join('.'), host, 'the destination')
      t.equal(b.readUInt16BE(24), 4567)
      t.equal(b.readUInt16BE(26), port)
      t.equal(b.subarray(28).toString(), 'hello', 'then the early bytes, then EOF')
      await waitFor(() => c.of(9).some((f) => f.type === MUX_FIN), 'the node\'s FIN')
      t.equal(Buffer.concat(c.of(9).filter((f) => f.type === MUX_DATA).map((f) => f.payload)).toString(), 'bye')
      t.notOk(c.of(9).some((f) => f.type === MUX_RST), 'no RST: a clean close')
      t.notOk(c.of(9).some((f) => f.type === MUX_WINDOW), 'no WINDOW for a few early bytes (credit goes back by 64 KiB)')
      await waitFor(() => relay.counters.active === 1, 'the stream is gone, the carrier stays')
      t.equal(relay.counters.bytesToUpstream, 5, 'the host\'s bytes counted, not the PROXY header')
      t.equal(relay.counters.bytesFromUpstream, 3)
    })

    t.test('credit: a node that sends more than the window waits for WINDOW frames', async (t) => {
      const big = 1 << 20
      const { host, port, carrier } = await setup(t, (s) => { s.end(Buffer.alloc(big, 7)); s.resume() })
      const c = await carrier()
      c.send(frame(1, MUX_OPEN, encodeConnect({ address: host, port })))
      const bytes = (): number => c.of(1).filter((f) => f.type === MUX_DATA).reduce((n, f) => n + f.payload.length, 0)
      await waitFor(() => bytes() === 256 * 1024, 'one window of bytes')
      await sleep(100) // a bounded look for bytes past the window, which must not come
      t.equal(bytes(), 256 * 1024, 'no more without credit')
      t.ok(c.of(1).every((f) => f.type !== MUX_DATA || f.payload.length <= 65536), 'DATA frames of at most 64 KiB')
      let granted = 256 * 1024
      while (granted < big) { c.send(muxWindow(1, 256 * 1024)); granted += 256 * 1024; await waitFor(() => bytes() === granted, `${granted} bytes`) }
      await waitFor(() => c.of(1).some((f) => f.type === MUX_FIN), 'then the FIN')
      t.equal(bytes(), big)
    })
  })
}
