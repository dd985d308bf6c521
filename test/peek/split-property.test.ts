// Property: the route does not depend on how the first flight is split,
// across TCP reads or across TLS records (fast-check, generated inputs).
import t from 'tap'
import fc from 'fast-check'
import { tlsRawCap } from '../../src/dataplane/peek/index.js'
import { applyFraming, cutsArb, framingArb, namedHelloArb, namedHttpHeadArb, split } from '../fixtures/peek-arbitraries.js'
import { feedPieces, pieces, summary } from '../fixtures/peek-helpers.js'

const RUNS = 300

t.test('generated ClientHellos route by their name however framed and split', async (t) => {
  fc.assert(fc.property(namedHelloArb, framingArb, cutsArb, ({ hs, name }, framing, cuts) => {
    const flight = applyFraming(hs, framing)
    // Tiny records can push a large hello past the raw-byte cap: too-large.
    const want = flight.length > tlsRawCap() ? { kind: 'too-large' } : { kind: 'sni', name }
    const whole = summary(feedPieces([flight]).outcome)
    const r = feedPieces(split(flight, cuts))
    return JSON.stringify(whole) === JSON.stringify(want) &&
      JSON.stringify(summary(r.outcome)) === JSON.stringify(want) &&
      Buffer.concat(r.peeker.chunks).equals(flight)
  }), { numRuns: RUNS })
  t.pass(`${RUNS} hellos`)
})

t.test('generated HTTP/1.x heads route by Host however split', async (t) => {
  fc.assert(fc.property(namedHttpHeadArb, cutsArb, ({ bytes, name }, cuts) => {
    const want = JSON.stringify({ kind: 'host', name })
    return JSON.stringify(summary(feedPieces([bytes]).outcome)) === want &&
      JSON.stringify(summary(feedPieces(split(bytes, cuts)).outcome)) === want
  }), { numRuns: RUNS })
  t.pass(`${RUNS} heads`)
})

t.test('one byte per push agrees with one push for generated inputs', async (t) => {
  fc.assert(fc.property(fc.oneof(namedHelloArb.map((h) => applyFraming(h.hs, { sizes: [16_384], minor: 1 })), namedHttpHeadArb.map((h) => h.bytes)), (bytes) => {
    return JSON.stringify(summary(feedPieces(pieces(bytes, 1)).outcome)) === JSON.stringify(summary(feedPieces([bytes]).outcome))
  }), { numRuns: 100 })
  t.pass()
})
