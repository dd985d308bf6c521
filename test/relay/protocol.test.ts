import t from 'tap'
import fc from 'fast-check'
import {
  encodeAuth, encodeConnect, parseAuth, parseConnect, verifyAuthMac, ipToBytes, bytesToIp, proxyV2Header,
  Status, statusErrorCode, MAGIC, AUTH_LEN, VERSION, CMD_UDP,
} from '../../src/relay/protocol.js'
import { FrameDecoder, encodeFrame, UDP_MAX_PAYLOAD } from '../../src/relay/udp-frame.js'

const token = Buffer.alloc(32, 7)

t.test('AUTH (v2) parses at every split point, and its MAC verifies under the token only', async (t) => {
  const auth = encodeAuth(token, { ack: true, now: 1_700_000_000_123, nonce: Buffer.alloc(16, 9) })
  t.equal(auth.length, AUTH_LEN)
  t.notOk(auth.includes(token), 'the token is not on the wire')
  for (let i = 0; i < auth.length; i++) t.equal(parseAuth(auth.subarray(0, i)).kind, 'need', `prefix ${i}`)
  const r = parseAuth(Buffer.concat([auth, Buffer.from('extra')]))
  t.equal(r.kind, 'ok')
  if (r.kind !== 'ok') return
  t.equal(r.used, AUTH_LEN)
  t.equal(r.value.ack, true)
  t.equal(r.value.timestamp, 1_700_000_000_123)
  t.same([...r.value.nonce], [...Buffer.alloc(16, 9)])
  t.ok(verifyAuthMac(token, r.value))
  t.notOk(verifyAuthMac(Buffer.alloc(32, 8), r.value), 'another token')
  // Any changed bit of the signed part (flags, time, nonce) breaks the MAC: no downgrade of ACK, no moved timestamp.
  for (const at of [5, 6, 13, 14, 29]) {
    const bent = Buffer.from(auth)
    bent[at] = (bent[at] as number) ^ (at === 5 ? 0 : 1)
    if (at === 5) bent[at] = 0
    const p = parseAuth(bent)
    t.ok(p.kind === 'ok' && !verifyAuthMac(token, p.value), `byte ${at} changed: MAC fails`)
  }
  const a2 = encodeAuth(token)
  const b2 = encodeAuth(token)
  t.notSame([...a2.subarray(14, 30)], [...b2.subarray(14, 30)], 'a fresh nonce each time')
})

t.test('AUTH garbage is refused on its first wrong byte; a v1 HELLO gets VERSION', async (t) => {
  t.match(parseAuth(Buffer.from('GET / HTTP/1.1\r\n')), { kind: 'bad', status: Status.HEADER })
  t.match(parseAuth(Buffer.from([0x16, 0x03, 0x01])), { kind: 'bad', status: Status.HEADER }) // a TLS record
  t.match(parseAuth(Buffer.from('K')), { kind: 'need' })
  t.match(parseAuth(Buffer.from('KX')), { kind: 'bad', status: Status.HEADER })
  t.match(parseAuth(Buffer.concat([MAGIC, Buffer.from([1, 32])])), { kind: 'bad', status: Status.VERSION }, 'version 1 (raw token) is never accepted')
  t.match(parseAuth(Buffer.concat([MAGIC, Buffer.from([VERSION, 0x80])])), { kind: 'bad', status: Status.HEADER }, 'unknown AUTH flag')
  t.throws(() => encodeAuth(Buffer.alloc(15)), RangeError)
})

t.test('CONNECT round-trips IPv4, IPv6, with and without a source, at every split point', async (t) => {
  const cases = [
    encodeConnect({ address: '172.18.0.2', port: 30080 }),
    encodeConnect({ address: 'fc00:f853:ccd:e793::3', port: 10256 }, { address: '127.0.0.1', port: 51000 }),
    encodeConnect({ address: '10.0.0.1', port: 31000 }, { address: '::1', port: 1 }, true),
  ]
  for (const c of cases) {
    for (let i = 0; i < c.length; i++) t.equal(parseConnect(c.subarray(0, i)).kind, 'need')
    t.equal(parseConnect(c).kind, 'ok')
  }
  const r = parseConnect(cases[1] as Buffer)
  t.same(r.kind === 'ok' ? r.value : null, { destination: { address: 'fc00:f853:ccd:e793::3', port: 10256 }, source: { address: '127.0.0.1', port: 51000 }, proxyV2: false, answer: false, udp: false })
  const a = parseConnect(encodeConnect({ address: '10.0.0.1', port: 30000 }, undefined, false, true))
  t.equal(a.kind === 'ok' && a.value.answer, true, 'ANSWER flag')
})

t.test('CONNECT malformed fields are refused', async (t) => {
  t.match(parseConnect(Buffer.from([3])), { kind: 'bad', status: Status.HEADER }, 'unknown command')
  t.match(parseConnect(Buffer.from([CMD_UDP, 0x03])), { kind: 'bad', status: Status.HEADER }, 'PROXY v2 on a UDP flow')
  t.match(parseConnect(Buffer.from([1, 0x80])), { kind: 'bad' }, 'unknown flag')
  t.match(parseConnect(Buffer.from([1, 0x08])), { kind: 'bad' }, 'unknown flag 0x08')
  t.match(parseConnect(Buffer.from([1, 0x02])), { kind: 'bad' }, 'PROXY without source')
  t.match(parseConnect(Buffer.from([1, 0, 5])), { kind: 'bad' }, 'unknown family')
  t.match(parseConnect(Buffer.from([1, 0, 4, 10, 0, 0, 1, 0, 0])), { kind: 'bad' }, 'port 0')
})

t.test('address bytes round-trip (property)', async () => {
  fc.assert(fc.property(fc.ipV4(), (ip) => bytesToIp(ipToBytes(ip) as Buffer) === ip))
  fc.assert(fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (raw) => {
    const b = Buffer.from(raw)
    return (ipToBytes(bytesToIp(b)) as Buffer).equals(b)
  }))
  fc.assert(fc.property(fc.ipV6(), fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 0, max: 200 }), (ip, port, cut) => {
    const enc = encodeConnect({ address: ip, port })
    const split = Math.min(cut, enc.length)
    if (split < enc.length && parseConnect(enc.subarray(0, split)).kind !== 'need') return false
    const r = parseConnect(enc)
    return r.kind === 'ok' && (ipToBytes(r.value.destination.address) as Buffer).equals(ipToBytes(ip) as Buffer) && r.value.destination.port === port
  }))
})

t.test('statuses map to stable error codes', async (t) => {
  t.equal(statusErrorCode(Status.AUTH), 'KT_ERR_RELAY_AUTH')
  t.equal(statusErrorCode(Status.STALE), 'KT_ERR_RELAY_AUTH')
  t.equal(statusErrorCode(Status.DENIED), 'KT_ERR_RELAY_DENIED')
  t.equal(statusErrorCode(Status.UNREACHABLE), 'KT_ERR_RELAY_UNREACHABLE')
  t.equal(statusErrorCode(Status.TIMEOUT), 'KT_ERR_CONNECT_TIMEOUT')
  t.equal(statusErrorCode(Status.HEADER), 'KT_ERR_RELAY_HEADER')
  t.equal(statusErrorCode(99), 'KT_ERR_RELAY_PROTOCOL')
})

t.test('PROXY v2 header layout (haproxy proxy-protocol.txt §2.2)', async (t) => {
  const h = proxyV2Header({ address: '192.0.2.1', port: 5000 }, { address: '172.18.0.2', port: 30080 })
  t.equal(h.length, 16 + 12)
  t.same([...h.subarray(12, 16)], [0x21, 0x11, 0, 12])
  t.same([...h.subarray(16, 20)], [192, 0, 2, 1])
  t.equal(h.readUInt16BE(24), 5000)
  t.equal(h.readUInt16BE(26), 30080)
  const mixed = proxyV2Header({ address: '::1', port: 1 }, { address: '10.0.0.1', port: 2 })
  t.equal(mixed[13], 0x21, 'mixed families go as IPv6')
  t.equal(mixed.length, 16 + 36)
})

t.test('UDP BIND: command 2, same fields, round-trips at every split point', async (t) => {
  const c = encodeConnect({ address: '172.18.0.3', port: 30053 }, { address: '127.0.0.1', port: 40000 }, false, false, true)
  t.equal(c[0], CMD_UDP)
  for (let i = 0; i < c.length; i++) t.equal(parseConnect(c.subarray(0, i)).kind, 'need', `prefix ${i}`)
  const r = parseConnect(c)
  t.same(r.kind === 'ok' ? r.value : null, { destination: { address: '172.18.0.3', port: 30053 }, source: { address: '127.0.0.1', port: 40000 }, proxyV2: false, answer: false, udp: true })
  t.throws(() => encodeConnect({ address: '10.0.0.1', port: 30000 }, { address: '10.0.0.2', port: 1 }, true, false, true), RangeError, 'no PROXY header on UDP')
})

t.test('UDP frames: datagrams 0..65,507 bytes survive any split of the stream, boundaries kept', async (t) => {
  const sizes = [0, 1, 2, 1400, 8192, 65_506, UDP_MAX_PAYLOAD]
  const dgs = sizes.map((n, i) => Buffer.alloc(n, i + 1))
  const stream = Buffer.concat(dgs.map(encodeFrame))
  t.equal(stream.length, sizes.reduce((a, n) => a + n + 2, 0))
  for (const step of [1, 2, 3, 7, 1000, 65_509, stream.length]) {
    const d = new FrameDecoder()
    const got: Buffer[] = []
    for (let at = 0; at < stream.length; at += step) got.push(...d.push(stream.subarray(at, at + step)))
    t.same(got.map((b) => b.length), sizes, `split every ${step} bytes`)
    t.ok(got.every((b, i) => b.equals(dgs[i] as Buffer)), `bytes exact (split every ${step})`)
    t.equal(d.partial, 0)
  }
  const d = new FrameDecoder()
  t.same(d.push(Buffer.from([0, 5, 1, 2])), [], 'a partial frame waits')
  t.equal(d.partial, 4)
})

t.test('UDP frames: an oversize length is KT_ERR_RELAY_FRAME, at once and ever after', async (t) => {
  const d = new FrameDecoder()
  const over = Buffer.from([0xff, 0xe4]) // 65,508
  t.equal(over.readUInt16BE(0), UDP_MAX_PAYLOAD + 1)
  t.same(d.push(Buffer.concat([encodeFrame(Buffer.from('ok')), over])).map(String), ['ok'], 'the datagram before it still counts')
  t.match(d.error, { code: 'KT_ERR_RELAY_FRAME' })
  t.same(d.push(encodeFrame(Buffer.from('later'))), [], 'the stream is not trusted after it')
  const split = new FrameDecoder()
  t.same(split.push(Buffer.from([0xff])), [])
  t.equal(split.error, undefined)
  t.same(split.push(Buffer.from([0xff])), [])
  t.match(split.error, { code: 'KT_ERR_RELAY_FRAME' }, 'split across chunks too')
  t.throws(() => encodeFrame(Buffer.alloc(UDP_MAX_PAYLOAD + 1)), { code: 'KT_ERR_RELAY_FRAME' }, 'never encoded')
})

t.test('mux frames: decoded at every split point, payloads intact, in order', async (t) => {
  const { MuxDecoder, muxHeader, muxRst, muxWindow, MUX_OPEN, MUX_DATA, MUX_FIN, MUX_RST, MUX_WINDOW, parseOpen } = await import('../../src/relay/mux-frame.js')
  const open = encodeConnect({ address: '10.0.0.2', port: 30080 }, { address: '::1', port: 5555 }, true)
  const data = Buffer.from('hello, stream')
  const wire = Buffer.concat([muxHeader(7, MUX_OPEN, open.length), open, muxHeader(7, MUX_DATA, data.length), data, muxHeader(7, MUX_FIN, 0), muxWindow(7, 65536), muxRst(9, Status.DENIED)])
  for (let cut = 0; cut <= wire.length; cut++) {
    const got: Array<[number, number, string]> = []
    // A DATA frame cut by a read comes in pieces: the pieces join up.
    const sink = {
      onFrame: (id: number, type: number, p: Buffer) => {
        const last = got[got.length - 1]
        if (type === MUX_DATA && last !== undefined && last[1] === MUX_DATA && last[0] === id && got.length === 2) last[2] += p.toString('hex')
        else got.push([id, type, p.toString('hex')])
      },
    }
    const d = new MuxDecoder()
    t.equal(d.push(wire.subarray(0, cut), sink), undefined)
    t.equal(d.push(wire.subarray(cut), sink), undefined)
    t.same(got.map((g) => g[1]), [MUX_OPEN, MUX_DATA, MUX_FIN, MUX_WINDOW, MUX_RST], `cut ${cut}`)
    t.equal(got[1]?.[2], data.toString('hex'), `cut ${cut}: the DATA bytes`)
    if (cut !== 0) continue
    t.equal(Buffer.from(got[3]?.[2] ?? '', 'hex').readUInt32BE(0), 65536)
    t.same(got[4], [9, MUX_RST, '03'])
  }
  const req = parseOpen(open)
  t.match(req, { destination: { address: '10.0.0.2', port: 30080 }, source: { address: '::1', port: 5555 }, proxyV2: true })
  t.match(parseOpen(open.subarray(0, 5)), /truncated/)
  t.match(parseOpen(Buffer.concat([open, Buffer.from([0])])), /after its BIND/)
  t.match(parseOpen(encodeConnect({ address: '10.0.0.2', port: 30080 }, undefined, false, true)), /ANSWER/)
  t.match(parseOpen(encodeConnect({ address: '10.0.0.2', port: 30080 }, undefined, false, false, true)), /UDP/)
  t.match(parseOpen(Buffer.from([1, 0, 5, 1, 2, 3, 4, 0, 80])), /family/)
})

t.test('mux frames: garbage is KT_ERR_RELAY_MUX after the good frames, and sticks', async (t) => {
  const { MuxDecoder, muxHeader, MUX_DATA, MUX_PAYLOAD_MAX } = await import('../../src/relay/mux-frame.js')
  const good = Buffer.concat([muxHeader(1, MUX_DATA, 2), Buffer.from('ok')])
  const bad: Array<[string, Buffer]> = [
    ['stream id 0', muxHeader(0, MUX_DATA, 0)],
    ['unknown frame type', muxHeader(1, 99, 0)],
    ['over the', muxHeader(1, MUX_DATA, MUX_PAYLOAD_MAX + 1)],
    ['FIN with', muxHeader(1, 3, 2)],
    ['RST with', muxHeader(1, 4, 0)],
    ['WINDOW with', muxHeader(1, 5, 3)],
    ['unknown frame type', Buffer.from('GET / HTTP/1.1\r\n')],
  ]
  for (const [why, b] of bad) {
    let frames = 0
    const sink = { onFrame: () => { frames++ } }
    const d = new MuxDecoder()
    const err = d.push(Buffer.concat([good, b]), sink)
    t.match(err, { code: 'KT_ERR_RELAY_MUX', message: new RegExp(why) }, why)
    t.equal(frames, 1, 'the frame before it was delivered')
    t.equal(d.push(good, sink), err, 'and nothing after')
    t.equal(frames, 1)
  }
  // Truncated: a partial frame waits, it is not an error; a cut DATA frame passes on the bytes that came.
  const { muxRst } = await import('../../src/relay/mux-frame.js')
  const d = new MuxDecoder()
  t.equal(d.push(muxRst(3, 1).subarray(0, 8), { onFrame: () => t.fail('not complete') }), undefined)
  t.equal(d.pending, 8)
  const pieces: string[] = []
  const d2 = new MuxDecoder()
  t.equal(d2.push(good.subarray(0, 9), { onFrame: (_id, _t, p) => { pieces.push(p.toString()) } }), undefined)
  t.equal(d2.push(Buffer.concat([good.subarray(9), good]), { onFrame: (_id, _t, p) => { pieces.push(p.toString()) } }), undefined)
  t.same(pieces, ['o', 'k', 'ok'])
  t.equal(d2.pending, 0)
})
