// Capped exponential backoff with jitter: bounds of every step.

import t from 'tap'
import { Backoff } from '../../src/control/backoff.js'

t.test('doubles from the initial delay up to the cap, within the jitter', async (t) => {
  for (const r of [0, 0.5, 0.999]) {
    const b = new Backoff({ initialMs: 200, maxMs: 30_000, jitter: 0.2, random: () => r })
    const seen: number[] = []
    for (let i = 0; i < 12; i++) seen.push(b.next())
    for (let i = 0; i < seen.length; i++) {
      const base = Math.min(30_000, 200 * 2 ** i)
      t.ok((seen[i] as number) >= Math.floor(base * 0.8) && (seen[i] as number) <= Math.min(30_000, Math.ceil(base * 1.2)), `step ${i}: ${seen[i]} ms around ${base}`)
    }
    t.equal(seen.at(-1), r === 0 ? 24_000 : 30_000, 'capped')
  }
})

t.test('reset starts over; huge attempt counts do not overflow', async (t) => {
  const b = new Backoff({ initialMs: 100, maxMs: 1000, jitter: 0, random: () => 0.5 })
  for (let i = 0; i < 5000; i++) b.next()
  t.equal(b.next(), 1000)
  b.reset()
  t.equal(b.next(), 100)
  t.equal(b.next(), 200)
})
