// A client that sends one byte per write must cost O(n), not O(n²): each
// byte is examined once, hello payload is skipped in runs, and the message
// is copied out once, when complete. Counted, not timed: the reader's byte
// and skip calls and Buffer allocations are tallied while feeding.
import t from 'tap'
import { FirstFlightPeeker } from '../../src/dataplane/peek/index.js'
import { ChunkReader } from '../../src/dataplane/peek/reader.js'
import { frame, handshake, helloBody, pieces } from '../fixtures/peek-helpers.js'

interface Tally { u8: number, skip: number, skipped: number, concat: number, allocUnsafe: number, toString: number, pushes: number, ms: number }

function tally (chunks: readonly Buffer[]): { tally: Tally, kind: string } {
  const t: Tally = { u8: 0, skip: 0, skipped: 0, concat: 0, allocUnsafe: 0, toString: 0, pushes: 0, ms: 0 }
  const proto = ChunkReader.prototype
  const origU8 = proto.u8
  const origSkip = proto.skip
  const origConcat = Buffer.concat
  const origAlloc = Buffer.allocUnsafe
  const origToString = Buffer.prototype.toString
  proto.u8 = function (this: ChunkReader) { t.u8++; return origU8.call(this) }
  proto.skip = function (this: ChunkReader, n: number) { t.skip++; t.skipped += n; origSkip.call(this, n) }
  Buffer.concat = function (...a: Parameters<typeof Buffer.concat>) { t.concat++; return origConcat.apply(Buffer, a) }
  Buffer.allocUnsafe = function (size: number) { t.allocUnsafe++; return origAlloc.call(Buffer, size) }
  Buffer.prototype.toString = function (this: Buffer, ...a: unknown[]) { t.toString++; return (origToString as (...x: unknown[]) => string).apply(this, a) } as typeof Buffer.prototype.toString
  let kind = 'need-more'
  const start = performance.now()
  try {
    const p = new FirstFlightPeeker()
    for (const c of chunks) {
      t.pushes++
      kind = p.push(c).kind
    }
  } finally {
    t.ms = performance.now() - start
    proto.u8 = origU8
    proto.skip = origSkip
    Buffer.concat = origConcat
    Buffer.allocUnsafe = origAlloc
    Buffer.prototype.toString = origToString
  }
  return { tally: t, kind }
}

t.test('HTTP: a 16 KiB head one byte per push examines each byte once', async (t) => {
  const head = Buffer.from('GET / HTTP/1.1\r\nHost: slow.test\r\nX-Pad: ' + 'p'.repeat(16_384 - 44) + '\r\n\r\n')
  t.equal(head.length, 16_384)
  const { tally: c, kind } = tally(pieces(head, 1))
  t.equal(kind, 'host')
  t.equal(c.u8 + c.skipped, head.length, 'every byte consumed exactly once (the reader never rewinds)')
  t.ok(c.u8 + c.skip <= c.pushes + 1, `one scan per push, plus the copy-out (${c.u8 + c.skip} for ${c.pushes})`)
  t.equal(c.concat, 0, 'no concatenation per push')
  t.ok(c.allocUnsafe <= 1, `one copy of the head when complete (${c.allocUnsafe})`)
  t.ok(c.toString <= 1, 'decoded once')
  t.ok(c.ms < 2000, `${c.pushes} pushes in ${c.ms.toFixed(1)} ms`)
})

t.test('TLS: a 16 KiB hello one byte per push reads headers only and skips the payload', async (t) => {
  // 16,388 handshake bytes: two records of at most 16,384 (RFC 8446 §5.1).
  const flight = frame(handshake(helloBody({ sni: 'slow.example.test', padTo: 16_384 })))
  const { tally: c, kind } = tally(pieces(flight, 1))
  t.equal(kind, 'sni')
  // Bytewise: 2 record headers + the handshake header; then, once, the two
  // record lengths again while copying the hello out of its records.
  t.equal(c.u8, 2 * 5 + 4 + 2 * 2, 'only headers are read bytewise')
  t.ok(c.skip <= flight.length, `payload skipped in at most one run per push (${c.skip})`)
  t.ok(c.u8 + c.skipped <= 2 * flight.length, 'each byte consumed once while peeking, once more when copied out')
  t.equal(c.concat, 0)
  t.ok(c.allocUnsafe <= 1, 'the hello is copied out once')
  t.ok(c.ms < 2000, `${c.pushes} pushes in ${c.ms.toFixed(1)} ms`)
})

t.test('TLS: many small records, one byte per push: work grows with records, not with bytes²', async (t) => {
  const hs = handshake(helloBody({ sni: 'slow.example.test', padTo: 8000 }))
  const flight = frame(hs, 64)
  const records = Math.ceil(hs.length / 64)
  const { tally: c, kind } = tally(pieces(flight, 1))
  t.equal(kind, 'sni')
  t.equal(c.u8, records * 5 + 4 + records * 2, `${records} record headers + the handshake header, and the record lengths once more to copy out`)
  t.ok(c.skip <= flight.length)
  t.ok(c.allocUnsafe <= 1, 'reassembled once')
})

t.test('undecided pushes do no parsing: a hello missing its last byte never reaches the parser', async (t) => {
  const flight = frame(handshake(helloBody({ sni: 'slow.example.test', padTo: 4000 })))
  const { tally: c, kind } = tally(pieces(flight.subarray(0, flight.length - 1), 1))
  t.equal(kind, 'need-more')
  t.equal(c.allocUnsafe, 0, 'nothing copied')
  t.equal(c.toString, 0, 'nothing decoded')
})
