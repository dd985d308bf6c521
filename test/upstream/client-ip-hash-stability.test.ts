import t from 'tap'
import { createBalancer, type Balanceable } from '../../src/dataplane/balancer.js'

class B implements Balanceable {
  readonly key: string
  active = 0
  available = true
  constructor (key: string) { this.key = key }
}
const none: ReadonlySet<B> = new Set()

// 10,000 client addresses with the low entropy real ones have: a few /24s, and some IPv6.
const clients: string[] = []
for (let i = 0; i < 8000; i++) clients.push(`192.168.${(i >> 8) & 255}.${i & 255}`)
for (let i = 0; i < 2000; i++) clients.push(`fd00:10:244::${i.toString(16)}`)

const backends = Array.from({ length: 5 }, (_, i) => new B(`172.18.0.${i + 2}:31443`))

function assign (bal: ReturnType<typeof createBalancer<B>>, exclude: ReadonlySet<B> = none): Map<string, B> {
  const m = new Map<string, B>()
  for (const c of clients) m.set(c, bal.pick(c, exclude) as B)
  return m
}

t.test('same client, same backend; spread about evenly', async (t) => {
  const bal = createBalancer<B>('client-ip-hash')
  bal.setBackends(backends)
  const a = assign(bal)
  const b = assign(bal)
  let same = 0
  for (const c of clients) if (a.get(c) === b.get(c)) same++
  t.equal(same, clients.length, 'deterministic')
  const per = new Map<B, number>()
  for (const v of a.values()) per.set(v, (per.get(v) ?? 0) + 1)
  t.equal(per.size, 5)
  for (const [k, v] of per) t.ok(v > 1700 && v < 2300, `${k.key}: ${v} of 10000`)
  // A fresh balancer over the same backends in another order agrees (keyed on the backend key, not its index).
  const bal2 = createBalancer<B>('client-ip-hash')
  bal2.setBackends([...backends].reverse())
  const c2 = assign(bal2)
  let agree = 0
  for (const c of clients) if (c2.get(c) === a.get(c)) agree++
  t.equal(agree, clients.length, 'order of the list does not matter')
  t.equal(bal.pick('::ffff:192.168.3.4', none), bal.pick('192.168.3.4', none), 'IPv4-mapped form hashes as the IPv4 client')
})

t.test('removing one of 5 backends remaps only its ~1/5 of clients', async (t) => {
  const bal = createBalancer<B>('client-ip-hash')
  bal.setBackends(backends)
  const before = assign(bal)
  const gone = backends[2] as B
  bal.setBackends(backends.filter((b) => b !== gone))
  const after = assign(bal)
  let moved = 0
  let movedFromOthers = 0
  for (const c of clients) {
    if (before.get(c) !== after.get(c)) {
      moved++
      if (before.get(c) !== gone) movedFromOthers++
    }
  }
  t.equal(movedFromOthers, 0, 'no client of a remaining backend moves')
  t.ok(moved > 1700 && moved < 2300, `moved ${moved} of 10000 (≈1/5)`)
  // It comes back: its own clients return, nobody else moves.
  bal.setBackends(backends)
  const again = assign(bal)
  let back = 0
  for (const c of clients) if (again.get(c) === before.get(c)) back++
  t.equal(back, clients.length, 'restoring the backend restores the exact mapping')
})

t.test('an unhealthy or excluded backend only moves its own clients, and they return', async (t) => {
  const bal = createBalancer<B>('client-ip-hash')
  bal.setBackends(backends)
  const before = assign(bal)
  const sick = backends[0] as B
  sick.available = false
  const during = assign(bal)
  let others = 0
  let toSick = 0
  for (const c of clients) {
    if (during.get(c) === sick) toSick++
    if (before.get(c) !== sick && during.get(c) !== before.get(c)) others++
  }
  t.equal(toSick, 0, 'nobody is sent to the unhealthy backend')
  t.equal(others, 0, 'clients of healthy backends stay put')
  const excl = assign(bal, new Set([backends[1] as B]))
  let exclMoved = 0
  for (const c of clients) if (before.get(c) !== sick && before.get(c) !== backends[1] && excl.get(c) !== before.get(c)) exclMoved++
  t.equal(exclMoved, 0, 'excluding one more moves only that one\'s clients')
  sick.available = true
  const healed = assign(bal)
  let same = 0
  for (const c of clients) if (healed.get(c) === before.get(c)) same++
  t.equal(same, clients.length, 'its clients return when it is healthy again')
})
