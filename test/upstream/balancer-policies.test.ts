import t from 'tap'
import { createBalancer, type Balanceable } from '../../src/dataplane/balancer.js'

class B implements Balanceable {
  readonly key: string
  active = 0
  available = true
  constructor (key: string) { this.key = key }
}

const none: ReadonlySet<B> = new Set()
const mk = (n: number): B[] => Array.from({ length: n }, (_, i) => new B(`10.0.0.${i + 1}:30080`))

t.test('round-robin cycles, skipping unavailable and excluded backends', async (t) => {
  const bs = mk(3)
  const bal = createBalancer<B>('round-robin')
  bal.setBackends(bs)
  t.same([1, 2, 3, 4, 5, 6].map(() => bal.pick('1.1.1.1', none)?.key), [bs[0], bs[1], bs[2], bs[0], bs[1], bs[2]].map((b) => b?.key))
  bs[1]!.available = false
  const seen = [1, 2, 3, 4].map(() => bal.pick('1.1.1.1', none))
  t.notOk(seen.includes(bs[1]), 'unavailable backend is skipped')
  t.equal(bal.pick('1.1.1.1', new Set([bs[0]!, bs[2]!])), undefined, 'all eligible excluded → undefined')
  t.equal(bal.pick('1.1.1.1', new Set([bs[0]!, bs[2]!]), true), bs[1], 'includeUnavailable lifts only the health filter')
  bs.forEach((b) => { b.available = false })
  t.equal(bal.pick('1.1.1.1', none), undefined)
  t.ok(bal.pick('1.1.1.1', none, true), 'try-all picks among unhealthy ones')
  bal.setBackends([])
  t.equal(bal.pick('1.1.1.1', none), undefined, 'empty upstream')
})

t.test('least-connections prefers the least loaded and spreads ties', async (t) => {
  const bs = mk(3)
  const bal = createBalancer<B>('least-connections')
  bal.setBackends(bs)
  bs[0]!.active = 5; bs[1]!.active = 1; bs[2]!.active = 3
  t.equal(bal.pick('c', none), bs[1])
  t.equal(bal.pick('c', new Set([bs[1]!])), bs[2])
  bs[1]!.available = false
  t.equal(bal.pick('c', none), bs[2])
  for (const b of bs) { b.active = 0; b.available = true }
  const counts = new Map<B, number>()
  for (let i = 0; i < 30; i++) { const b = bal.pick('c', none)!; counts.set(b, (counts.get(b) ?? 0) + 1) }
  t.same([...counts.values()], [10, 10, 10], 'ties rotate evenly')
})

t.test('random is uniform over eligible backends only', async (t) => {
  const bs = mk(4)
  let seed = 42
  const rnd = (): number => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed / 2 ** 32 }
  const bal = createBalancer<B>('random', rnd)
  bal.setBackends(bs)
  bs[0]!.available = false
  const counts = new Map<string, number>()
  for (let i = 0; i < 9000; i++) { const b = bal.pick('c', new Set([bs[3]!]))!; counts.set(b.key, (counts.get(b.key) ?? 0) + 1) }
  t.same([...counts.keys()].sort(), [bs[1]!.key, bs[2]!.key].sort(), 'only eligible ones')
  for (const v of counts.values()) t.ok(v > 4000 && v < 5000, `about half each (${v})`)
  t.equal(bal.pick('c', new Set([bs[1]!, bs[2]!, bs[3]!])), undefined)
})

t.test('unknown policy is a coded error', async (t) => {
  t.throws(() => createBalancer('weighted' as never), { code: 'KT_ERR_INVALID_ARG' })
})
