// A hostile HTTP head must cost the native parser time linear in its size.
// Review finding: kt_peek.c http_head() looked for each field line's colon
// with a search running to the end of the head, not the end of the line, so a
// 16 KiB head of colon-less lines ("ab\n" x 5,400) cost ~5,400 scans of up to
// 16 KiB each: 0.5-2 ms of a worker thread per connection (measured 750 us
// here, 11x the baseline below; a whole lane connection costs ~50 us), from
// any unauthenticated client. The same head with a colon on every line is the
// linear baseline; the two must cost about the same.
import t from 'tap'
import { nativePeekHooks } from '../../src/dataplane/native/index.js'
import { nativeSkip } from '../support/native.js'

const hooks = nativePeekHooks()
const skip = nativeSkip(hooks === undefined ? 'the native addon (with the peek hooks) is not available' : false)

function head (line: string): Buffer {
  const parts = ['GET / HTTP/1.1\r\nHost: a.test\r\n']
  let n = parts[0]?.length ?? 0
  while (n + line.length < 16_300) { parts.push(line); n += line.length }
  parts.push('\r\n')
  return Buffer.from(parts.join(''), 'latin1')
}

/**
 * Microseconds of one whole-buffer parse of each buffer: rounds of `reps`
 * parses, the two interleaved so a burst of load hits both alike, and the
 * fastest round of each kept (load only ever adds time, so the minimum is
 * the cost; a median still moves with the machine's load).
 */
function costs (bufs: Buffer[], rounds = 9, reps = 20): number[] {
  const h = hooks as NonNullable<typeof hooks>
  const best = bufs.map(() => Infinity)
  for (let r = 0; r < rounds; r++) {
    bufs.forEach((buf, k) => {
      const t0 = process.hrtime.bigint()
      for (let i = 0; i < reps; i++) h.peekParse(buf)
      best[k] = Math.min(best[k] as number, Number(process.hrtime.bigint() - t0) / 1000 / reps)
    })
  }
  return best
}

t.test('colon-less field lines do not make the head scan quadratic', { skip }, async (t) => {
  const h = hooks as NonNullable<typeof hooks>
  const hostile = head('ab\n')
  const baseline = head('a:\n')
  t.ok(hostile.length > 16_000 && hostile.length <= 16_384, `the head fits the limit (${hostile.length} bytes)`)
  // Both still parse to the Host name (the answer does not change, only the cost).
  t.same(h.peekParse(hostile).slice(0, 4), [2, 0, 2, 'a.test'], 'hostile head: host a.test')
  t.same(h.peekParse(baseline).slice(0, 4), [2, 0, 2, 'a.test'], 'baseline head: host a.test')
  costs([baseline, hostile], 2, 5) // warm up
  const [hb, hh] = costs([baseline, hostile]) as [number, number]
  t.comment(`per parse: colon on every line ${hb.toFixed(1)} us, colon-less lines ${hh.toFixed(1)} us`)
  // Measured before the fix: 11x the baseline; after: 1.0x (same line count
  // and length, so a linear scan costs the same for both). The bound is
  // relative and loose (5x) so a loaded machine cannot fail it.
  t.ok(hh < hb * 5 + 20, `colon-less lines cost ${(hh / hb).toFixed(1)}x the baseline (want < 5x)`)
})
