// Malformed and edge-case ClientHellos: truncation at every length, every
// length field set too large, oversize hellos, empty and IP-literal names,
// GREASE-only extensions, SSLv2 format, odd record layers. Nothing throws;
// malformed input takes the default route (no-name).
import t from 'tap'
import { FirstFlightPeeker, parseClientHelloBody } from '../../src/dataplane/peek/index.js'
import {
  EXT_SERVER_NAME, GREASE, extension, feedPieces, frame, handshake, handshakeOf, helloBody, loadFlights,
  isTlsFlight, pieces, serverNameData, summary, tlsFlight, u16,
} from '../fixtures/peek-helpers.js'

const outcome = (buf: Buffer): ReturnType<typeof summary> => summary(feedPieces([buf]).outcome)
const reason = (buf: Buffer): string | undefined => {
  const o = feedPieces([buf]).outcome
  return o.kind === 'no-name' ? o.reason : undefined
}

t.test('a flight truncated at every length is need-more; the body truncated at every length is never a name', async (t) => {
  for (const f of loadFlights().filter(isTlsFlight)) {
    let bad = 0
    for (let n = 1; n < f.bytes.length; n++) {
      const p = new FirstFlightPeeker()
      if (p.push(f.bytes.subarray(0, n)).kind !== 'need-more') bad++
    }
    t.equal(bad, 0, `${f.file}: every proper prefix is need-more`)
    const body = handshakeOf(f.bytes).subarray(4)
    let named = 0
    for (let n = 0; n < body.length; n++) {
      if (parseClientHelloBody(body.subarray(0, n)).ok) named++
    }
    t.equal(named, 0, `${f.file}: no truncated body yields a name`)
  }
})

/** Offsets and widths of every length field in a single-record hello flight. */
function lengthFields (flight: Buffer): Array<{ what: string, at: number, width: 1 | 2 | 3 }> {
  const out: Array<{ what: string, at: number, width: 1 | 2 | 3 }> = [
    { what: 'record length', at: 3, width: 2 },
    { what: 'handshake length', at: 6, width: 3 },
  ]
  let p = 9 + 2 + 32
  out.push({ what: 'session_id length', at: p, width: 1 })
  p += 1 + (flight[p] as number)
  out.push({ what: 'cipher_suites length', at: p, width: 2 })
  p += 2 + flight.readUInt16BE(p)
  out.push({ what: 'compression_methods length', at: p, width: 1 })
  p += 1 + (flight[p] as number)
  out.push({ what: 'extensions length', at: p, width: 2 })
  const end = p + 2 + flight.readUInt16BE(p)
  p += 2
  while (p < end) {
    const type = flight.readUInt16BE(p)
    out.push({ what: `extension 0x${type.toString(16)} length`, at: p + 2, width: 2 })
    if (type === EXT_SERVER_NAME) {
      out.push({ what: 'server_name_list length', at: p + 4, width: 2 })
      out.push({ what: 'host_name length', at: p + 7, width: 2 })
    }
    p += 4 + flight.readUInt16BE(p + 2)
  }
  return out
}

function readField (b: Buffer, at: number, width: number): number {
  return width === 1 ? b[at] as number : width === 2 ? b.readUInt16BE(at) : b.readUIntBE(at, 3)
}

function writeField (b: Buffer, at: number, width: number, v: number): void {
  if (width === 1) b[at] = v & 0xff
  else if (width === 2) b.writeUInt16BE(v & 0xffff, at)
  else b.writeUIntBE(v & 0xffffff, at, 3)
}

t.test('every length field set too large never throws and never routes by a wrong name', async (t) => {
  const flights = [...loadFlights().filter((f) => isTlsFlight(f) && f.expect.kind === 'sni').map((f) => f.bytes),
    tlsFlight({ sni: 'built.example.test', before: [[GREASE[3] as number, Buffer.alloc(0)]], after: [[0x10, Buffer.from([0, 3, 2, 0x68, 0x32])]] })]
  for (const flight of flights) {
    const name = (feedPieces([flight]).outcome as { name: string }).name
    for (const f of lengthFields(flight)) {
      const v = readField(flight, f.at, f.width)
      for (const bump of [v + 1, v + 2, (1 << (8 * f.width)) - 1]) {
        if (bump >= 1 << (8 * f.width)) continue
        const b = Buffer.from(flight)
        writeField(b, f.at, f.width, bump)
        const one = feedPieces([b])
        const bytewise = feedPieces(pieces(b, 1))
        t.same(summary(bytewise.outcome), summary(one.outcome), `${f.what}=${bump}: split-independent`)
        t.equal(one.peeker.parserFaults, 0)
        const o = summary(one.outcome)
        if (f.what === 'record length') {
          // The hello is complete inside the (longer) record: it routes.
          t.same(o, { kind: 'sni', name }, `${f.what}=${bump}`)
        } else if (f.what === 'handshake length') {
          t.same(o, { kind: bump > 16_384 ? 'too-large' : 'need-more' }, `${f.what}=${bump}: waits for the missing bytes or gives up`)
        } else if (/^extension 0x(?!0 )/.test(f.what)) {
          // Another extension's length: the walk may re-synchronise on the
          // structure inside the next extension (a list length is often the
          // extension length - 2), which is then a different well-formed
          // hello. The name, if any, must still be the one sent.
          t.ok(o.kind === 'no-name' || (o.kind === 'sni' && o.name === name), `${f.what}=${bump}: ${JSON.stringify(o)}`)
        } else {
          t.same(o, { kind: 'no-name', protocol: 'tls' }, `${f.what}=${bump}`)
        }
      }
    }
  }
})

t.test('a 17,000-byte hello is too-large, decided from its handshake header', async (t) => {
  const hs = handshake(helloBody({ sni: 'huge.example.test', padTo: 17_000 }))
  const flight = frame(hs, 16_384)
  const r = feedPieces(pieces(flight, 1))
  t.same(summary(r.outcome), { kind: 'too-large' })
  t.equal(r.decidedAt, 9, 'known at byte 9, without buffering 17,000 bytes')
  t.same(outcome(flight), { kind: 'too-large' })
  t.same(outcome(frame(handshake(helloBody({ sni: 'edge.example.test', padTo: 16_385 })))), { kind: 'too-large' }, '16,385 bytes')
  t.same(outcome(frame(handshake(helloBody({ sni: 'edge.example.test', padTo: 16_384 })))), { kind: 'sni', name: 'edge.example.test' }, '16,384 bytes')
})

t.test('names: empty, IP literals, case, trailing dot, non-ASCII, wildcards', async (t) => {
  const cases: Array<[string | Buffer, ReturnType<typeof summary>, string?]> = [
    ['', { kind: 'no-name', protocol: 'tls' }, 'bad-name'],
    ['127.0.0.1', { kind: 'no-name', protocol: 'tls' }, 'bad-name'],
    ['10.1.2.3.', { kind: 'no-name', protocol: 'tls' }, 'bad-name'],
    ['::1', { kind: 'no-name', protocol: 'tls' }, 'bad-name'],
    ['[::1]', { kind: 'no-name', protocol: 'tls' }, 'bad-name'],
    ['0x7f.1', { kind: 'no-name', protocol: 'tls' }, 'bad-name'],
    ['Mixed.Case.TEST.', { kind: 'sni', name: 'mixed.case.test' }],
    ['two.dots..', { kind: 'no-name', protocol: 'tls' }, 'bad-name'],
    ['*.example.test', { kind: 'no-name', protocol: 'tls' }, 'bad-name'],
    [Buffer.from('caf\xc3\xa9.test', 'latin1'), { kind: 'no-name', protocol: 'tls' }, 'bad-name'],
    [Buffer.from('a\0b.test', 'latin1'), { kind: 'no-name', protocol: 'tls' }, 'bad-name'],
    ['xn--caf-dma.test', { kind: 'sni', name: 'xn--caf-dma.test' }],
    ['localhost', { kind: 'sni', name: 'localhost' }],
    ['web.default.localhost', { kind: 'sni', name: 'web.default.localhost' }],
    [`${'a'.repeat(63)}.test`, { kind: 'sni', name: `${'a'.repeat(63)}.test` }],
    [`${'a'.repeat(64)}.test`, { kind: 'no-name', protocol: 'tls' }, 'bad-name'],
  ]
  for (const [sni, want, why] of cases) {
    const flight = tlsFlight({ sni })
    t.same(outcome(flight), want, JSON.stringify(String(sni)))
    if (why !== undefined) t.equal(reason(flight), why)
  }
})

t.test('GREASE and unknown extensions are skipped', async (t) => {
  const grease = GREASE.map((g) => [g, Buffer.alloc(0)] as const)
  t.same(outcome(tlsFlight({ before: grease })), { kind: 'no-name', protocol: 'tls' }, 'GREASE-only extension list')
  t.equal(reason(tlsFlight({ before: grease })), 'absent')
  t.same(outcome(tlsFlight({ before: grease, sni: 'g.example.test', after: [[GREASE[5] as number, Buffer.from([0])]] })), { kind: 'sni', name: 'g.example.test' })
  t.same(outcome(tlsFlight({ before: [[0xfe0d, Buffer.alloc(200, 1)], [0x4469, Buffer.alloc(3)], [0xffff, Buffer.alloc(0)]], sni: 'u.example.test' })), { kind: 'sni', name: 'u.example.test' })
  t.same(outcome(tlsFlight({})), { kind: 'no-name', protocol: 'tls' }, 'no extensions at all (empty block)')
  t.same(outcome(tlsFlight({ noExtensions: true })), { kind: 'no-name', protocol: 'tls' }, 'no extensions block (TLS 1.2 era)')
  t.same(outcome(tlsFlight({ sessionId: Buffer.alloc(0), sni: 's.test' })), { kind: 'sni', name: 's.test' }, 'empty session id')
})

t.test('structural errors give no name', async (t) => {
  const malformed = (label: string, buf: Buffer): void => {
    t.same(outcome(buf), { kind: 'no-name', protocol: 'tls' }, label)
    t.equal(reason(buf), 'malformed', `${label}: malformed`)
  }
  const sni = (n: string): readonly [number, Buffer] => [EXT_SERVER_NAME, serverNameData(n)]
  malformed('server_name twice (RFC 8446 §4.2)', tlsFlight({ sni: 'a.test', after: [sni('b.test')] }))
  const twoNames = Buffer.concat([Buffer.from([0]), u16(6), Buffer.from('a.test'), Buffer.from([0]), u16(6), Buffer.from('b.test')])
  malformed('two host_name entries (RFC 6066 §3)', tlsFlight({ before: [[EXT_SERVER_NAME, Buffer.concat([u16(twoNames.length), twoNames])]] }))
  malformed('empty server_name_list', tlsFlight({ before: [[EXT_SERVER_NAME, u16(0)]] }))
  malformed('server_name with 1 byte of data', tlsFlight({ before: [[EXT_SERVER_NAME, Buffer.from([0])]] }))
  malformed('session id of 33 bytes', tlsFlight({ sessionId: Buffer.alloc(33), sni: 'a.test' }))
  malformed('odd cipher_suites length', handshakeFlight(oddSuites()))
  malformed('trailing bytes after the extensions', handshakeFlight(Buffer.concat([helloBody({ sni: 'a.test' }), Buffer.from([0])])))
  malformed('a handshake that is not a ClientHello', frame(handshake(helloBody({ sni: 'a.test' }), 2)))
  malformed('a zero-length handshake record (RFC 8446 §5.1)', Buffer.concat([Buffer.from([0x16, 3, 1, 0, 0]), tlsFlight({ sni: 'a.test' })]))
  const hs = handshake(helloBody({ sni: 'a.test' }))
  malformed('an alert interleaved between hello records', Buffer.concat([frame(hs.subarray(0, 20)), Buffer.from([0x15, 3, 3, 0, 2, 2, 40]), frame(hs.subarray(20))]))
  malformed('a later record with major version 2', Buffer.concat([frame(hs.subarray(0, 20)), frame(hs.subarray(20), 16_384, 0x0203)]))
  malformed('a zero-length body', frame(handshake(Buffer.alloc(0))))
  const unknownType = Buffer.concat([Buffer.from([7]), u16(3), Buffer.from('abc'), Buffer.from([0]), u16(6), Buffer.from('k.test')])
  t.same(outcome(tlsFlight({ before: [[EXT_SERVER_NAME, Buffer.concat([u16(unknownType.length), unknownType])]] })), { kind: 'sni', name: 'k.test' }, 'an unknown name_type is skipped')
})

function oddSuites (): Buffer {
  const b = helloBody({ sni: 'a.test', sessionId: Buffer.alloc(0) })
  // cipher_suites length sits right after version(2) random(32) sid_len(1)
  b.writeUInt16BE(b.readUInt16BE(35) - 1, 35)
  return b
}

function handshakeFlight (body: Buffer): Buffer {
  return frame(handshake(body))
}

t.test('SSLv2-format hellos give no name; other high-bit bytes are not TLS', async (t) => {
  // RFC 6101 E.2: 2-byte header (high bit set), MSG-CLIENT-HELLO, version, lengths, specs, challenge.
  const specs = Buffer.from([0x00, 0x00, 0x39, 0x00, 0x00, 0x2f, 0x07, 0x00, 0xc0])
  const challenge = Buffer.alloc(16, 0xab)
  for (const version of [[0x03, 0x01], [0x00, 0x02], [0x03, 0x03]]) {
    const msg = Buffer.concat([Buffer.from([0x01, ...version]), u16(specs.length), u16(0), u16(challenge.length), specs, challenge])
    const v2 = Buffer.concat([Buffer.from([0x80 | (msg.length >> 8), msg.length & 0xff]), msg])
    const r = feedPieces(pieces(v2, 1))
    t.same(summary(r.outcome), { kind: 'no-name', protocol: 'tls' }, `SSLv2 hello, version ${version.join('.')}`)
    t.equal(r.decidedAt, 5, 'decided at byte 5')
    t.equal((r.outcome as { reason?: string }).reason, 'sslv2')
  }
  t.same(outcome(Buffer.from([0x80, 0x2e, 0x02, 0x03, 0x01])), { kind: 'not-tls-or-http' }, 'SSLv2 header, not a hello')
  t.same(outcome(Buffer.from([0xff, 0xff, 0xff])), { kind: 'not-tls-or-http' })
  t.same(outcome(Buffer.from([0x80, 0x03])), { kind: 'not-tls-or-http' }, 'record too short for a hello')
})

t.test('record versions other than 3.x are not TLS', async (t) => {
  const hs = handshake(helloBody({ sni: 'a.test' }))
  t.same(outcome(frame(hs, 16_384, 0x0203)), { kind: 'not-tls-or-http' })
  t.same(outcome(frame(hs, 16_384, 0x0403)), { kind: 'not-tls-or-http' })
  t.same(outcome(Buffer.from([0x16])), { kind: 'need-more' })
})

t.test('a record much longer than the hello: routed as soon as the hello is complete', async (t) => {
  const hs = handshake(helloBody({ sni: 'early.example.test' }))
  const rec = Buffer.concat([Buffer.from([0x16, 3, 1]), u16(hs.length + 5000), hs])
  t.same(outcome(rec), { kind: 'sni', name: 'early.example.test' })
})

t.test('parseClientHelloBody never reads past the buffer', async (t) => {
  const body = helloBody({ sni: 'view.example.test', after: [[0x2b, Buffer.from([2, 3, 4])]] })
  // A view into a larger buffer whose next bytes would look valid.
  const big = Buffer.concat([body, extension(0, serverNameData('beyond.test'))])
  t.same(parseClientHelloBody(big.subarray(0, body.length)), { ok: true, name: 'view.example.test' })
  t.same(parseClientHelloBody(Buffer.alloc(0)), { ok: false, reason: 'malformed' })
})
