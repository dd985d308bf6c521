// RFC 8446 §5.1: a handshake message may span several records, and records
// may be cut anywhere by TCP. Real hellos re-framed into records of 1..N
// bytes, then fed whole, one byte per push and at random points, route the
// same as the original.
import t from 'tap'
import { FirstFlightPeeker, PEEK_MAX_MESSAGE_BYTES, PEEK_MAX_TLS_RECORDS, tlsRawCap } from '../../src/dataplane/peek/index.js'
import { cutAt, feedPieces, frame, handshake, handshakeOf, helloBody, isTlsFlight, loadFlights, pieces, summary } from '../fixtures/peek-helpers.js'

const tlsFlights = loadFlights().filter(isTlsFlight)

/** A small deterministic PRNG so that failures replay. */
function prng (seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let x = Math.imul(s ^ (s >>> 15), 1 | s)
    x ^= x + Math.imul(x ^ (x >>> 7), 61 | x)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

t.test('records of every size from 1 to 64 bytes, and larger', async (t) => {
  const sizes = [...Array.from({ length: 64 }, (_, i) => i + 1), 100, 255, 512, 1000, 1500, 16_384]
  for (const f of tlsFlights) {
    const hs = handshakeOf(f.bytes)
    let ok = 0
    for (const size of sizes) {
      const flight = frame(hs, size)
      if (flight.length > tlsRawCap()) continue // over the documented cap; tested below
      const one = summary(feedPieces([flight]).outcome)
      const bytewise = size <= 8 || size % 7 === 0 ? summary(feedPieces(pieces(flight, 1)).outcome) : one
      if (JSON.stringify(one) === JSON.stringify(f.expect) && JSON.stringify(bytewise) === JSON.stringify(f.expect)) ok++
      else t.fail(`${f.file} in ${size}-byte records: ${JSON.stringify(one)} / ${JSON.stringify(bytewise)}`)
    }
    t.ok(ok >= 60, `${f.file}: ${ok} framings route as recorded`)
  }
})

t.test('mixed record sizes with random TCP splits', async (t) => {
  const rnd = prng(20261121)
  for (const f of tlsFlights) {
    const hs = handshakeOf(f.bytes)
    for (let round = 0; round < 40; round++) {
      const sizes = Array.from({ length: 8 }, () => 1 + Math.floor(rnd() * 300))
      const flight = frame(hs, sizes)
      const cuts = Array.from({ length: 1 + Math.floor(rnd() * 12) }, () => Math.floor(rnd() * flight.length))
      const r = feedPieces(cutAt(flight, cuts))
      t.same(summary(r.outcome), f.expect, `${f.file} records ${sizes.join(',')} cuts ${cuts.join(',')}`)
      t.ok(Buffer.concat(r.peeker.chunks).equals(flight))
    }
  }
})

t.test('any 3.x record version, per record', async (t) => {
  const hs = handshake(helloBody({ sni: 'ver.example.test' }))
  for (let minor = 0; minor <= 4; minor++) {
    const flight = frame(hs, 40, 0x0300 | minor)
    t.same(summary(feedPieces([flight]).outcome), { kind: 'sni', name: 'ver.example.test' }, `record version 3.${minor}`)
  }
  t.same(summary(feedPieces([frame(hs, 16_384, 0x03ff)]).outcome), { kind: 'sni', name: 'ver.example.test' }, 'record version 3.255')
})

t.test('the raw-byte cap holds a full 16,384-byte hello in up to 256 records', async (t) => {
  t.equal(PEEK_MAX_MESSAGE_BYTES, 16_384)
  t.equal(PEEK_MAX_TLS_RECORDS, 256)
  t.equal(tlsRawCap(), 16_384 + 4 + 256 * 5, 'cap = 17,668 bytes')
  const hs = handshake(helloBody({ sni: 'big.example.test', padTo: 16_384 }))
  t.equal(hs.length, 16_388)
  // RFC 6066 §4 smallest max_fragment_length: 512 bytes -> 33 records.
  for (const size of [16_384, 4096, 512, Math.ceil(hs.length / 256)]) {
    const flight = frame(hs, size)
    t.ok(flight.length <= tlsRawCap(), `${size}-byte records: ${flight.length} raw bytes`)
    t.same(summary(feedPieces([flight]).outcome), { kind: 'sni', name: 'big.example.test' }, `16 KiB hello in ${size}-byte records`)
    t.same(summary(feedPieces(pieces(flight, 1)).outcome), { kind: 'sni', name: 'big.example.test' }, `... one byte per push`)
  }
  // More records than the cap allows: too-large, decided at the cap, not before.
  const tiny = frame(hs, 16)
  const r = feedPieces(pieces(tiny, 1000))
  t.same(summary(r.outcome), { kind: 'too-large' }, `${tiny.length} raw bytes in 16-byte records`)
  t.ok(r.decidedAt >= tlsRawCap() && r.decidedAt < tlsRawCap() + 1000, `decided at ${r.decidedAt}`)
})

t.test('a smaller maxBytes scales the caps', async (t) => {
  const p = new FirstFlightPeeker({ maxBytes: 1000 })
  t.same(summary(p.push(frame(handshake(helloBody({ sni: 'a.test', padTo: 1001 })), 16_384))), { kind: 'too-large' })
  const q = new FirstFlightPeeker({ maxBytes: 1000 })
  t.same(summary(q.push(frame(handshake(helloBody({ sni: 'a.test', padTo: 1000 })), 16_384))), { kind: 'sni', name: 'a.test' })
  for (const bad of [0, 63, 1.5, 2 ** 21, Number.NaN]) {
    t.throws(() => new FirstFlightPeeker({ maxBytes: bad }), { code: 'KT_ERR_INVALID_ARG' }, `maxBytes ${bad}`)
  }
})
