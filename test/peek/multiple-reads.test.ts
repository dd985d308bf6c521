// Envoy's MultipleReads method: every recorded sample, fed at every split
// point in two chunks and one byte per push, gives the same outcome, and no
// byte is lost or reordered.
import t from 'tap'
import { cutAt, feedPieces, loadFlights, pieces, summary } from '../fixtures/peek-helpers.js'

const flights = loadFlights()

t.test('every split point in two chunks', async (t) => {
  for (const f of flights) {
    const whole = summary(feedPieces([f.bytes]).outcome)
    let bad = 0
    for (let i = 1; i < f.bytes.length; i++) {
      const r = feedPieces(cutAt(f.bytes, [i]))
      const s = summary(r.outcome)
      if (s.kind !== whole.kind || s.name !== whole.name || s.protocol !== whole.protocol) {
        bad++
        if (bad < 3) t.fail(`${f.file} split at ${i}: ${JSON.stringify(s)}`)
      }
      if (!Buffer.concat(r.peeker.chunks).equals(f.bytes)) t.fail(`${f.file} split at ${i}: bytes changed`)
    }
    t.equal(bad, 0, `${f.file}: ${f.bytes.length - 1} split points agree`)
  }
})

t.test('one byte per push: the same outcome, need-more until the deciding byte', async (t) => {
  for (const f of flights) {
    const whole = feedPieces([f.bytes])
    const r = feedPieces(pieces(f.bytes, 1))
    t.same(summary(r.outcome), f.expect, f.file)
    t.ok(r.decidedAt > 0 && r.decidedAt <= f.bytes.length, `${f.file}: decided at byte ${r.decidedAt}`)
    // The decision never comes before the bytes that carry it: a prefix one
    // byte shorter than the deciding point is still undecided.
    const prefix = feedPieces([f.bytes.subarray(0, r.decidedAt - 1)])
    t.equal(prefix.outcome.kind, 'need-more', `${f.file}: ${r.decidedAt - 1} bytes are not enough`)
    t.equal(r.peeker.chunks.length, f.bytes.length)
    t.ok(Buffer.concat(r.peeker.chunks).equals(f.bytes), `${f.file}: every byte kept in order`)
    t.ok(whole.peeker.bytes().equals(f.bytes))
  }
})

t.test('chunks pushed after the decision are still kept', async (t) => {
  const f = flights.find((x) => x.file === 'curl-http11.bin')
  if (f === undefined) return t.fail('missing')
  const r = feedPieces([f.bytes, Buffer.from('body bytes'), Buffer.alloc(0), Buffer.from('more')])
  t.same(summary(r.outcome), f.expect)
  t.equal(r.peeker.length, f.bytes.length + 14)
  t.equal(Buffer.concat(r.peeker.chunks).toString('latin1').slice(-14), 'body bytesmore')
})
