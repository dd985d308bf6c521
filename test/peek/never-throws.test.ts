// Property: no sequence of bytes, however split, makes the peeker or the
// parsers throw, and the outcome does not depend on the split.
import t from 'tap'
import fc from 'fast-check'
import { parseClientHelloBody, parseHttpHead } from '../../src/dataplane/peek/index.js'
import { normalizeHostname } from '../../src/routing/hostmatch.js'
import { cutsArb, mutate, mutationArb, split } from '../fixtures/peek-arbitraries.js'
import { feedPieces, loadFlights, summary } from '../fixtures/peek-helpers.js'

const bytesArb = fc.uint8Array({ maxLength: 2048 }).map((a) => Buffer.from(a))
/** Random tails behind prefixes that get past the first-byte checks. */
const prefixed = fc.tuple(fc.constantFrom(
  Buffer.from([0x16, 0x03, 0x01]), Buffer.from([0x16, 0x03, 0x03, 0x00, 0x40, 0x01, 0x00, 0x00, 0x3c, 0x03, 0x03]),
  Buffer.from('GET / HTTP/1.1\r\n'), Buffer.from('GET '), Buffer.from('PRI * HTTP/2.0\r\n'), Buffer.from([0x80, 0x40, 0x01, 0x03]),
), bytesArb).map(([p, tail]) => Buffer.concat([p, tail]))

function stable (bytes: Buffer, cuts: number[]): boolean {
  const one = feedPieces([bytes])
  const many = feedPieces(split(bytes, cuts))
  const o = one.outcome
  if (one.peeker.parserFaults !== 0 || many.peeker.parserFaults !== 0) return false
  if ((o.kind === 'sni' || o.kind === 'host') && normalizeHostname(o.name) !== o.name) return false
  return JSON.stringify(summary(o)) === JSON.stringify(summary(many.outcome)) && many.peeker.length === bytes.length
}

t.test('random bytes', async (t) => {
  fc.assert(fc.property(bytesArb, cutsArb, stable), { numRuns: 500 })
  t.pass()
})

t.test('random bytes behind TLS, HTTP, h2c and SSLv2 prefixes', async (t) => {
  fc.assert(fc.property(prefixed, cutsArb, stable), { numRuns: 500 })
  t.pass()
})

t.test('mutated recorded flights', async (t) => {
  const seeds = loadFlights().map((f) => f.bytes)
  fc.assert(fc.property(fc.constantFrom(...seeds), fc.constantFrom(...seeds), fc.array(mutationArb, { minLength: 1, maxLength: 6 }), cutsArb,
    (seed, other, muts, cuts) => stable(mutate(seed, muts, other), cuts)), { numRuns: 500 })
  t.pass()
})

t.test('the message parsers alone', async (t) => {
  fc.assert(fc.property(bytesArb, (b) => {
    parseClientHelloBody(b)
    parseHttpHead(b)
    return true
  }), { numRuns: 1000 })
  t.pass()
})
